"""mipcert.solve"""
