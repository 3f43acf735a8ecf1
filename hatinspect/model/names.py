"""The names a file or a command may give: the layouts read and the training algorithms.

Plain tuples with no imports, so that the command line can offer them as choices without
loading anything else.
"""

# The layouts a checkpoint can come from: "hatinspect", or the one a file was converted from.
SOURCES = (
    "hatinspect",
    "original-hat",
    "hat-cl",
    "clarena",
    "avalanche-packnet",
    "original-packnet",
    "piggyback",
    "supsup",
    "wsn",
)

# The training algorithms a run can name: HAT, AdaHAT, and fine-tuning (no mask, no protection).
ALGORITHMS = ("hat", "adahat", "finetuning")

# Every algorithm a file may name: those trained here and the rest of CLArena's HAT family.
READ_ALGORITHMS = (
    *ALGORITHMS, "fg-adahat", "amnesiac-hat", "wsn", "packnet", "piggyback", "supsup"
)  # fmt: skip
TITLES = {
    "hat": "HAT",
    "adahat": "AdaHAT",
    "finetuning": "fine-tuning",
    "fg-adahat": "FG-AdaHAT",
    "amnesiac-hat": "AmnesiacHAT",
    "wsn": "WSN",
    "packnet": "PackNet",
    "piggyback": "Piggyback",
    "supsup": "SupSup",
}

# How an algorithm treats what earlier tasks use: HAT keeps it bit-identical ("hard");
# AdaHAT and its descendants move it by a per-parameter adjustment rate ("soft").
HARD, SOFT, NO_PROTECTION = "hard", "soft", "none"
FROZEN = "frozen"  # the whole backbone stays bit-identical, whatever the masks (Piggyback, SupSup)
PROTECTIONS = {
    "hat": HARD,
    "adahat": SOFT,
    "finetuning": NO_PROTECTION,
    "fg-adahat": SOFT,
    "amnesiac-hat": SOFT,  # unless the file says its architecture is HAT's
    "wsn": HARD,  # the weights an earlier task's mask keeps are frozen
    "packnet": HARD,
    "piggyback": FROZEN,
    "supsup": FROZEN,  # the random weights are never trained (--train-weight-tasks 0)
}

# How a file's real-valued scores become binary masks, where its layout lets one choose
# (SupSup): the top-k of |scores| at the stored sparsity, or scores >= 0.
TOPK, SIGN = "topk", "sign"
MASK_RULES = (TOPK, SIGN)

# User metadata keys an import writes (without the native format's "user." prefix); their
# values are JSON text.
PROTECTION_KEY = "protection"  # "hard" or "soft", where the algorithm alone does not say
HPARAMS_KEY = "hparams"  # the algorithm's hyperparameters: name -> number, string or bool
UNLEARNED_KEY = "unlearned_tasks"  # ids of stored tasks whose learning was undone
MASKS_ONLY_KEY = "masks_only"  # true: the file stores masks, no weights (Piggyback's pack.py)
UPDATE_NORMS_KEY = "parameter_update_norms"  # task -> layer -> L2 norm of its stored update
# FG-AdaHAT: {"type": importance type, "tasks": {task: {layer: [units]}}, "summative": ...}
IMPORTANCES_KEY = "importances"
