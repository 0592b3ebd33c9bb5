"""The demo's sample models and data, trained here from scikit-learn's digits (nothing
downloaded): ``python -m packager.samples OUT`` writes them.
"""
