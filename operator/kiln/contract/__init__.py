"""The contract between the operator and the trainer it runs in its pods.

`train_spec`: what the operator tells the trainer (JSON in `KILN_TRAIN_SPEC`).
`train_report`: what the trainer tells the operator (the termination message, the exit
code). Both sides import these modules; neither copies them.
"""
