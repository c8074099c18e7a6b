"""The scikit-learn estimators: thin classes over the functional core."""
