"""matplotlib as every figure of towerlab uses it: files only (Agg), and names drawn as plain text."""


def pyplot():
    """matplotlib.pyplot on the Agg backend, with mathtext off: a metric or objective named `a$b` or `x_{1}` is a
    name to print, not TeX to parse (it was a ParseException that cost a run its report)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt
