"""The names a file or a command may give: the layouts read and the training algorithms.

Plain tuples with no imports, so that the command line can offer them as choices without
loading anything else.
"""

# The layouts a checkpoint can come from: "hatinspect", or the one a file was converted from.
SOURCES = ("hatinspect", "original-hat", "hat-cl", "clarena")

# The training algorithms a run can name: HAT, AdaHAT, and fine-tuning (no mask, no protection).
ALGORITHMS = ("hat", "adahat", "finetuning")
