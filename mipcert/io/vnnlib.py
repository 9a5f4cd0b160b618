def parse_vnnlib(*a): pass
def write_vnnlib(*a): pass
