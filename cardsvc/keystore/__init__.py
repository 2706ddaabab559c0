"""Key store: the root key and purpose-bound issuing keys, their rotation and publication.

``backend`` defines the storage interface (a file backend now, PKCS#11 later);
``service`` holds the rules (which key signs, rotation invariants, trust list export).
"""
