"""mipcert.encode"""
