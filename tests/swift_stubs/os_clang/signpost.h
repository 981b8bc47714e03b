// Empty: the C side of the os stub (so that `import os.signpost` resolves); the API is in ../os.swift.
