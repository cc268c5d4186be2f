class Reader:
    name: str
