"""Training: jobs in the history database, the worker that runs them with the gliner2 trainer,
held-out evaluation, and the synthetic data the demo checkpoint is trained on.

Everything here may import PyTorch and the gliner2 trainer; the serving process only uses
:mod:`.jobs` (the job table) and :mod:`.artifacts` (where finished models live).
"""
