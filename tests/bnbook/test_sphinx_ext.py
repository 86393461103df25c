"""The page-head helpers of bnbook.sphinx_ext (the build itself is tested in tests/book)."""

from bnbook import sphinx_ext


def test_description_is_the_first_real_paragraph_as_plain_text_and_short():
    body = "<p>Fig. 1</p><p>Batch norm &amp; <em>its</em> statistics, measured on a batch of digits.</p>"
    assert (
        sphinx_ext.page_description(body, "fallback") == "Batch norm & its statistics, measured on a batch of digits."
    )
    long = "<p>" + "word " * 100 + "</p>"
    text = sphinx_ext.page_description(long, "fallback")
    assert len(text) <= sphinx_ext.DESCRIPTION_LENGTH and text.endswith("\u2026")
    assert sphinx_ext.page_description("<div>no paragraphs</div>", "fallback") == "fallback"


def test_sitemap_lists_every_page_under_the_base_url_escaped():
    xml = sphinx_ext.sitemap_xml("https://example.org/bn-book", ["index.html", "book/a&b.html"])
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert "<loc>https://example.org/bn-book/index.html</loc>" in xml
    assert "<loc>https://example.org/bn-book/book/a&amp;b.html</loc>" in xml


def test_doubled_front_page_title_is_made_single_and_others_are_kept():
    def fix(title):
        return sphinx_ext.DOUBLED_TITLE.sub(r"<title>\1</title>", title)

    assert fix("<title>Batch normalization, measured &#8212; Batch normalization, measured</title>") == (
        "<title>Batch normalization, measured</title>"
    )
    kept = "<title>1. Why normalize? &#8212; Batch normalization, measured</title>"
    assert fix(kept) == kept
