"""mipcert.verify"""
