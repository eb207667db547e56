"""Writes a tree of N empty files, 1,000 a directory, for bench/digest-memory.sh: a tree of
many files costs the parent per file, whatever their size. Usage: gen_empty.py N DIR
(python3, standard library only)."""
import os, sys
n, root = int(sys.argv[1]), sys.argv[2]
per = 1000
for d in range((n + per - 1) // per):
    dd = os.path.join(root, "d%05d" % d)
    os.makedirs(dd, exist_ok=True)
    for f in range(min(per, n - d * per)):
        os.close(os.open(os.path.join(dd, "f%04d" % f), os.O_CREAT | os.O_WRONLY, 0o644))
