"""Training: the Lightning module (module.py) and the generic torch estimator (fit.py)."""
