"""The README's example recipe runs as written."""

import re
import subprocess
import sys

from helpers import REPO


def test_the_readme_recipe_trains_as_written(tmp_path):
    text = (REPO / "README.md").read_text()
    code = re.search(r"<!-- recipe-example -->\n```python\n(.*?)```", text, re.S).group(1)
    (tmp_path / "tiny.py").write_text(code)
    proc = subprocess.run([sys.executable, "tiny.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    accuracy = float(re.search(r"accuracy (\S+)", proc.stdout).group(1))
    assert accuracy > 0.85 and (tmp_path / "runs" / "tiny" / "checkpoints" / "last.json").is_file()
