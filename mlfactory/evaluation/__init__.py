"""What a run reports about its predictions: classification, trading and calibration metrics, plots,
feature importance, and the comparison of runs. Pure numpy functions, each checked by hand in tests.
"""
