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


def test_description_reads_typeset_math_once_as_a_screen_reader_would():
    math = (
        '<span class="math"><span class="katex"><span class="katex-mathml"><math><semantics><msub><mi>μ</mi>'
        '<mi>B</mi></msub><annotation encoding="application/x-tex">\\mu_B</annotation></semantics></math></span>'
        '<span class="katex-html" aria-hidden="true"><span class="base"><span class="mord">μ</span>'
        '<span class="vlist"><span>B</span></span></span></span></span></span>'
    )
    body = f"<p>The batch mean {math} is subtracted<br>from every value of the batch, as measured here.</p>"
    assert sphinx_ext.spoken_text(math) == "μB"
    assert sphinx_ext.page_description(body, "x") == (
        "The batch mean μB is subtracted from every value of the batch, as measured here."
    )


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


def _png(width, height, seed=0):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (seed, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_png_size_reads_the_header_and_refuses_other_files():
    import pytest

    assert sphinx_ext.png_size(_png(7, 3)) == (7, 3)
    with pytest.raises(ValueError, match="PNG"):
        sphinx_ext.png_size(b"GIF89a" + bytes(20))


def test_lighten_page_moves_frames_to_files_sizes_images_and_drops_fontawesome(tmp_path):
    import base64
    import json

    out = tmp_path / "html"
    (out / "book").mkdir(parents=True)
    (out / "_images").mkdir()
    (out / "_images" / "fig.png").write_bytes(_png(40, 20))
    frames = [_png(10, 5, seed=k) for k in range(3)]
    uris = ["data:image/png;base64," + base64.b64encode(f).decode() for f in frames]
    page = out / "book" / "ch.html"
    text = (
        '<script defer src="../_static/scripts/fontawesome.js?digest=1"></script>\n'
        f'<img class="bnx-img" id="bnx-0123456789-img" src="{uris[1]}" alt="a" style="max-width:100%">'
        f'<script type="application/json" id="bnx-0123456789-frames">{json.dumps(uris)}</script>'
        '<img alt="static" src="../_images/fig.png" />'
    )
    lighter = sphinx_ext.lighten_page(text, page, out)
    assert "fontawesome" not in lighter and "data:image" not in lighter
    urls = json.loads(lighter.split('-frames">')[1].split("</script>")[0])
    assert len(urls) == 3 and all(u.startswith("../_static/frames/bnx-0123456789-") for u in urls)
    for url, data in zip(urls, frames):  # each file is its frame, byte for byte
        assert (page.parent / url).resolve().read_bytes() == data
    assert f'src="{urls[1]}" width="10" height="5"' in lighter  # the first frame shown is the one it was
    assert '<img alt="static" src="../_images/fig.png" width="40" height="20" loading="lazy"' in lighter
    assert sphinx_ext.lighten_page(lighter, page, out) == lighter  # a second pass changes nothing


def test_icon_css_draws_each_icon_from_its_path_and_refuses_unknown_ones():
    import pytest

    fake = (
        '(function(){var p={bars:[448,512,[],"f0c9","M0 96C0 78"],"magnifying-glass":[512,512,[128269],"f002","M416 208"]};'
        '(function(){d("fab",p)});var q={bars:[1,1,[],"f0c9","M9 9"]};(function(){d("far",q)});'
        'var r={bars:[448,512,[],"f0c9","M0 96C0 78"],"magnifying-glass":[512,512,[128269],"f002","M416 208"]};'
        '("fas",r),d("fa-solid",r)})'
    )
    icons = sphinx_ext.solid_icons(fake)
    assert icons["bars"] == (448, 512, "M0 96C0 78")
    css = sphinx_ext.icon_css(icons, {"bars", "magnifying-glass"})
    assert ".fa-bars{" in css and "viewBox='0 0 448 512'" in css and "width:0.875em" in css
    assert "M416 208" in css and "CC BY 4.0" in css
    with pytest.raises(ValueError, match="fa-nothing|nothing"):
        sphinx_ext.icon_css(icons, {"nothing"})


def test_lighten_page_can_link_from_the_site_root_as_the_single_page_builder_does(tmp_path):
    import base64

    out = tmp_path / "html"
    (out / "book").mkdir(parents=True)
    (out / "_images").mkdir()
    (out / "_images" / "fig.png").write_bytes(_png(8, 4))
    uri = "data:image/png;base64," + base64.b64encode(_png(10, 5)).decode()
    text = (
        f'<img class="bnx-img" id="bnx-00000000aa-img" src="{uri}" alt="a">'
        f'<script type="application/json" id="bnx-00000000aa-frames">["{uri}"]</script>'
        '<img alt="static" src="_images/fig.png" />'
    )
    lighter = sphinx_ext.lighten_page(text, out / "book" / "intro.html", out, links_from=out)
    assert 'src="_static/frames/bnx-00000000aa-000-' in lighter and "../_static" not in lighter
    assert 'src="_images/fig.png" width="8" height="4"' in lighter  # found from the root too


def test_an_edited_static_file_marks_the_build_outdated(tmp_path):
    from bnbook.sphinx_ext import static_outdated

    source, built = tmp_path / "_static", tmp_path / "html" / "_static"
    (source / "sub").mkdir(parents=True)
    (source / "bnbook.css").write_text("a { }")
    (source / "sub" / "x.js").write_text("1")
    assert static_outdated(source, built)  # nothing copied yet
    (built / "sub").mkdir(parents=True)
    (built / "bnbook.css").write_text("a { }")
    (built / "sub" / "x.js").write_text("1")
    (built / "frames.png").write_bytes(b"only in the build")  # what the build itself writes does not count
    assert not static_outdated(source, built)
    (source / "sub" / "x.js").write_text("2")  # same size, other bytes
    assert static_outdated(source, built)
