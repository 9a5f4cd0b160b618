def save_npz(*a): pass
def load_npz(*a): pass
