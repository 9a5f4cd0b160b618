"""mipcert.report"""
