"""The bounds a PyTorch file is held to before and after it is unpickled, each named by
what it protects. A real checkpoint is far inside every one; a crafted file that would
exhaust memory, time or the interpreter's stack is outside at least one."""

# A pickle's symbolic stack (pickle_opcodes): a 2 kB pickle can describe a key nested 10^6
# deep, which crashes the interpreter that hashes it, or a tuple of 2^60 leaves through
# memo re-use, which hashing never finishes.
MAX_DEPTH = 200  # nesting of containers and calls: a Lightning checkpoint nests < 40
MAX_OBJECTS = 10**7  # objects one pickled object expands to, each memo re-use counted again
MAX_INT_BITS = 4096  # an integer of thousands of digits is no size or count, and slow to print

# A file's bytes (zip_records, tensor_claims): a small file may claim gigabytes when
# inflated or viewed; none may claim more than a few times what it holds.
INFLATION = 4  # the zip records, and the tensors, hold at most this times the file's size ...
SLACK = 2**20  # ... plus this many bytes (small files and their headers)
