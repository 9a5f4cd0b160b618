"""mipcert.bounds"""
