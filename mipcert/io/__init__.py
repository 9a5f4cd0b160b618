"""mipcert.io"""
