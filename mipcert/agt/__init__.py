"""mipcert.agt"""
