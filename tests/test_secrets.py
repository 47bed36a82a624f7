"""secrets.py: what towerlab writes or prints of a URL or of the environment holds no credential."""

import pytest

from towerlab import secrets


@pytest.mark.parametrize(
    "url,shown",
    [
        ("http://user:hunter2@mlflow.example:5000/x", "http://user:***@mlflow.example:5000/x"),
        ("postgresql+psycopg://grader:p%40ss@db:5432/factory", "postgresql+psycopg://grader:***@db:5432/factory"),
        (
            "https://acct.blob.core.windows.net/c?sv=1&sig=abcDEF&se=2",
            "https://acct.blob.core.windows.net/c?sv=1&sig=***&se=2",
        ),
        ("https://h/p?token=t0k&x=1", "https://h/p?token=***&x=1"),
        ("http://user@host/db", "http://user@host/db"),  # a user name alone is not a secret
        ("sqlite:///study.db", "sqlite:///study.db"),
        ("journal:/shared/study.log", "journal:/shared/study.log"),
    ],
)
def test_urls_are_masked_where_they_hold_a_secret(url, shown):
    assert secrets.mask_url(url) == shown
    assert secrets.has_password(url) == (url != shown)


def test_urls_inside_text_are_masked():
    line = "cannot open --storage postgresql://u:s3cret@h/db (refused); also see http://a:b@c/"
    assert secrets.mask(line) == "cannot open --storage postgresql://u:***@h/db (refused); also see http://a:***@c/"


def test_only_harmless_variables_are_recorded():
    env = {
        "TOWERLAB_DATA": "/data",
        "TOWERLAB_DB_PASSWORD": "x",
        "TOWERLAB_TOKEN": "y",
        "AWS_SECRET_ACCESS_KEY": "z",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "MASTER_ADDR": "node0",
        "HOME": "/root",
    }
    assert secrets.environment(env) == {"CUDA_VISIBLE_DEVICES": "0,1", "MASTER_ADDR": "node0", "TOWERLAB_DATA": "/data"}
