def from_torch(*a): pass
def to_torch(*a): pass
