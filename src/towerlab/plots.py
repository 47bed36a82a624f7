"""matplotlib as every figure of towerlab uses it: files only (Agg), and names drawn as plain text."""


def pyplot():
    """matplotlib.pyplot on the Agg backend, with mathtext off: a metric or objective named `a$b` or `x_{1}` is a
    name to print, not TeX to parse (it was a ParseException that cost a run its report)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def save(fig, path, dpi: int = 100) -> None:
    """Write fig as a PNG at path and close it. Rendered in memory, then renamed into place (files.atomic_write): a
    link planted at score.png in a search's folder is replaced, never written through."""
    import io

    from towerlab.files import atomic_write

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write(path, buf.getvalue(), sync=False)
    pyplot().close(fig)
