from html.parser import HTMLParser

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fooled.analysis.html import write_html  # noqa: E402
from fooled.errors import FooledError  # noqa: E402

REPORT = """# Would p(x) notice?

Some text with `code`.

## Results

| model | test acc % | bits/dim |
|---|---|---|
| cnn | 97.5 | |
| flow | 91.2 | 2.131 |

## Figures

![Accuracy under attack](figures/accuracy.png)

_Accuracy under attack._

![Histogram of log p(x)](figures/hist.png)
"""

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Balance(HTMLParser):
    """Records tags that close out of order or never close, and every <img src> and table cell."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.srcs, self.cells = [], [], [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])
        if tag == "td":
            self.cells.append("")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:  # <img /> arrives here too
            return
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "td":
            self.cells[-1] += data.strip()


@pytest.fixture
def run_dir(tmp_path):
    (tmp_path / "figures").mkdir()
    for name in ("accuracy", "hist"):
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot([0, 1], [1, 0])
        fig.savefig(tmp_path / "figures" / f"{name}.png", dpi=40)
        plt.close(fig)
    (tmp_path / "report.md").write_text(REPORT)
    return tmp_path


def test_page_is_balanced_html_with_figures_embedded_and_the_table(run_dir):
    path = write_html(run_dir)
    assert path == run_dir / "report.html"
    page = path.read_text()
    parser = Balance()
    parser.feed(page)
    parser.close()
    assert page.startswith("<!DOCTYPE html>") and parser.errors == [] and parser.stack == []
    assert len(parser.srcs) == 2 and all(s.startswith("data:image/png;base64,") for s in parser.srcs)
    assert 'src="figures/' not in page
    assert "<table>" in page and "<th>bits/dim</th>" in page and ["cnn", "97.5", "", "flow", "91.2", "2.131"] == parser.cells
    assert '<td class="num">2.131</td>' in page and "<td>flow</td>" in page  # numbers stay on one line
    assert "<title>Would p(x) notice?</title>" in page and 'id="results"' in page  # the title, and the toc's anchors


def test_missing_report_or_figure_is_a_one_line_error(run_dir, tmp_path_factory, cli_error):
    (run_dir / "figures" / "hist.png").unlink()
    with pytest.raises(FooledError, match="figures/hist.png"):
        write_html(run_dir)
    assert not (run_dir / "report.html").exists()
    assert "figures/hist.png" in cli_error("show", run_dir)
    assert "no report.md" in cli_error("show", tmp_path_factory.mktemp("empty"))


def test_show_prints_the_path(run_dir, capsys):
    from fooled.cli import main

    assert main(["show", str(run_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(run_dir / "report.html")
