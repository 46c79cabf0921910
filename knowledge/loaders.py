"""Read help-center documents into `Document`s: Markdown, plain text, HTML and PDF files from a
folder (`load_folder`), or published pages listed by URL — a sitemap or a list of URLs — read
from a local mirror of the site (`load_url_list`); nothing is fetched over the network.

One bad document never stops an ingest: `load_file` raises `UnreadableDocument` (undecodable
text, an encrypted or damaged PDF, a page missing from the mirror), and the bulk loaders log a
warning naming it and skip it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import textwrap
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar
from urllib.parse import unquote, urlsplit
from xml.etree import ElementTree

from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning
from bs4.element import CData, NavigableString, Tag
from pypdf import PdfReader

log = logging.getLogger(__name__)

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
SUPPORTED_SUFFIXES = MARKDOWN_SUFFIXES | HTML_SUFFIXES | {".txt", ".pdf"}

_H1 = re.compile(r"^#[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
# Help-center exports (Jekyll, Hugo, Docusaurus...) often start with YAML front matter.
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)---[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_MATTER_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.MULTILINE)
_T = TypeVar("_T")


@dataclass(frozen=True)
class Document:
    """One source document: `source` is its path relative to the folder that was loaded, or
    the URL it is published at when it came from a URL list."""

    id: str
    title: str
    source: str
    text: str


class UnreadableDocument(ValueError):
    """A document that cannot be loaded; the message names the file or URL and says why."""


def document_id(source: str) -> str:
    """A stable id for a document: derived from its relative path or URL, not its content, so
    an edited article keeps its id across re-ingests."""
    return hashlib.sha1(source.encode("utf-8")).hexdigest()[:16]


def readable_stem(path: PurePosixPath | Path) -> str:
    """`refund-policy_v2.md` -> `Refund policy v2`."""
    words = re.sub(r"[-_\s]+", " ", path.stem).strip()
    return words[:1].upper() + words[1:] if words else path.name


def load_file(path: Path | str, root: Path | str) -> Document:
    """Load one `.md`, `.markdown`, `.txt`, `.html`, `.htm` or `.pdf` file; `root` is the folder
    `source` is relative to. Raises `UnreadableDocument` if the file cannot be read."""
    path, root = Path(path), Path(root)
    text, title = _read(path)
    # abspath, not resolve(): a symlinked file inside the folder keeps its in-folder name.
    source = Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    return Document(
        id=document_id(source), title=title or readable_stem(path), source=source, text=text
    )


def load_folder(path: Path | str, skipped: list[str] | None = None) -> list[Document]:
    """Load every supported document under `path` (recursively, hidden files and folders and
    other file types skipped), sorted by relative path. A single supported file is accepted
    too. Unreadable files are skipped with a warning (and the reason appended to `skipped`
    when given); `ValueError` if none could be loaded."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"knowledge folder not found: {root}")
    if root.is_file():
        return [load_file(root, root.parent)]
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Pruning in place stops os.walk from descending into .git, .obsidian and the like.
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        files.extend(
            Path(dirpath, name)
            for name in filenames
            if not name.startswith(".") and Path(name).suffix.lower() in SUPPORTED_SUFFIXES
        )
    documents = _load_each(files, lambda file: load_file(file, root), skipped)
    if not documents:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        found = f", {len(files)} found but unreadable" if files else ""
        raise ValueError(f"no documents found under {root} (looked for {supported} files{found})")
    return sorted(documents, key=lambda doc: doc.source)


def load_url_list(
    list_file: Path | str, pages_dir: Path | str, skipped: list[str] | None = None
) -> list[Document]:
    """Load the pages listed in `list_file` from `pages_dir`, a local mirror of the site.

    `list_file` is a sitemap (`.xml`, its `<loc>` entries) or a text file with one URL a line
    (blank lines and `#` comments ignored). Each page is read from the file `page_path` maps
    its URL to; its `source` is the URL without its `#fragment`, so citations link to the
    page, and its id derives from that URL. Pages missing from the mirror are skipped with a
    warning (appended to `skipped` when given); `ValueError` if none could be loaded.
    """
    urls = read_url_list(list_file)
    documents = _load_each(dict.fromkeys(urls), lambda url: load_url(url, pages_dir), skipped)
    if not documents:
        raise ValueError(f"none of the {len(urls)} URLs in {list_file} has a page in {pages_dir}")
    return documents


def read_url_list(list_file: Path | str) -> list[str]:
    """The URLs in a sitemap (`.xml`) or a text file of URLs, fragments removed, in order."""
    path = Path(list_file)
    if path.suffix.lower() == ".xml":
        try:
            tree = ElementTree.parse(path)
        except ElementTree.ParseError as exc:
            raise ValueError(f"{path}: not a valid sitemap ({exc})") from exc
        if _local_name(tree.getroot().tag) == "sitemapindex":
            raise ValueError(f"{path}: a sitemap index; pass each sitemap it lists instead")
        lines = [el.text or "" for el in tree.iter() if _local_name(el.tag) == "loc"]
    else:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    urls = [line.strip() for line in lines]
    return [url.split("#", 1)[0] for url in urls if url and not url.startswith("#")]


def load_url(url: str, pages_dir: Path | str) -> Document:
    """Load the page published at `url` from its copy in `pages_dir` (see `page_path`)."""
    url = url.split("#", 1)[0]
    path = page_path(url, pages_dir)
    text, title = _read(path)
    name = PurePosixPath(urlsplit(url).path).name
    fallback = readable_stem(PurePosixPath(name)) if name else urlsplit(url).netloc
    return Document(id=document_id(url), title=title or fallback, source=url, text=text)


def page_path(url: str, pages_dir: Path | str) -> Path:
    """The mirror file for `url`: its path under `pages_dir` if that names a supported file,
    else that path plus `.html` (or `.htm`), else `index.html` (or `.htm`) in that folder —
    `https://help.example.com/returns/policy` -> `returns/policy.html` or
    `returns/policy/index.html`. The host is not part of the path."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UnreadableDocument(f"{url}: not an http(s) URL")
    segments = [segment for segment in unquote(parts.path).split("/") if segment]
    # A mirror lookup must never escape pages_dir, whatever the list file says.
    if any(segment in (".", "..") or "\\" in segment for segment in segments):
        raise UnreadableDocument(f"{url}: the path must not contain '.', '..' or '\\'")
    base = Path(pages_dir, *segments)
    candidates = [base] if segments and base.suffix.lower() in SUPPORTED_SUFFIXES else []
    if segments:
        candidates += [base.with_name(base.name + ".html"), base.with_name(base.name + ".htm")]
    candidates += [base / "index.html", base / "index.htm"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(candidate) for candidate in candidates)
    raise UnreadableDocument(f"{url}: no copy in the mirror (looked for {tried})")


def html_to_markdown(html: bytes | str) -> tuple[str, str | None]:
    """The main text of an HTML page as Markdown, and its title (`<title>`, else the first
    `<h1>`). Headings become `#` headings, list items `- ` lines; navigation, banners, footers,
    sidebars, scripts and forms are dropped. `<main>`, else a single `<article>`, is preferred
    over the whole body."""
    with warnings.catch_warnings():
        # XHTML exports start with <?xml ...?>; parsing them as HTML is what we want.
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(html, "html.parser")
    title = _inline_text(soup.title) if soup.title else ""
    articles = soup.find_all("article")
    # A page without <body> (a fragment, or html.parser on odd markup) keeps <head> in `soup`.
    root = soup.find("main") or (articles[0] if len(articles) == 1 else None) or soup.body or soup
    for tag in root.find_all(_is_boilerplate):
        if not tag.decomposed:  # already gone with a dropped ancestor
            tag.decompose()
    writer = _MarkdownWriter()
    _render_children(root, writer, depth=0)
    h1 = root.find("h1")
    return writer.markdown(), title or (_inline_text(h1) if h1 else None) or None


def _load_each(
    items: Iterable[_T], load: Callable[[_T], Document], skipped: list[str] | None
) -> list[Document]:
    """The one place the bulk loaders skip an unreadable document, with a warning naming it."""
    documents = []
    for item in items:
        try:
            documents.append(load(item))
        except UnreadableDocument as exc:
            log.warning("skipped %s", exc)
            if skipped is not None:
                skipped.append(str(exc))
    return documents


def _read(path: Path) -> tuple[str, str | None]:
    """The text of a supported file, and its title if the file names one."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise ValueError(f"{path}: unsupported document type {suffix!r} (supported: {supported})")
    try:
        if suffix == ".pdf":
            return _read_pdf(path)
        if suffix in HTML_SUFFIXES:
            # Bytes, so the page's own <meta charset> decides the encoding.
            return html_to_markdown(path.read_bytes())
        # utf-8-sig drops the byte-order mark some Windows editors write.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableDocument(
            f"{path}: not valid UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from exc
    except OSError as exc:
        raise UnreadableDocument(f"{path}: {exc.strerror or exc}") from exc
    if suffix not in MARKDOWN_SUFFIXES:
        return text, None
    text, title = _split_front_matter(text)
    heading = _H1.search(text)
    # A `# ` heading in the body wins over front matter: it is what readers see.
    return text, heading.group(1) if heading else title


def _read_pdf(path: Path) -> tuple[str, str | None]:
    """Page texts joined by blank lines; the title from the metadata, else the first line."""
    try:
        reader = PdfReader(path)
        # Many PDFs are encrypted with an empty user password only to restrict editing.
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableDocument(f"{path}: the PDF is password-protected")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except UnreadableDocument:
        raise
    except Exception as exc:
        # pypdf raises PdfReadError but also KeyError, ValueError... on damaged files, and one
        # damaged file must not stop an ingest.
        raise UnreadableDocument(f"{path}: not a readable PDF ({exc})") from exc
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if not text:
        raise UnreadableDocument(f"{path}: the PDF has no text layer (scanned? run OCR first)")
    first_line = next(line.strip() for line in text.splitlines() if line.strip())
    title = " ".join(str(title or "").split())
    return text, title or textwrap.shorten(first_line, 120, placeholder="…")


def _split_front_matter(text: str) -> tuple[str, str | None]:
    """Remove a leading YAML front-matter block; return the rest and its `title:` if any."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return text, None
    title = _FRONT_MATTER_TITLE.search(match.group(1))
    value = title.group(1).strip("'\"") if title else None
    return text[match.end() :], value or None


def _local_name(tag: str) -> str:
    """`{http://www.sitemaps.org/schemas/sitemap/0.9}loc` -> `loc`."""
    return tag.rsplit("}", 1)[-1]


# --- HTML to Markdown ---------------------------------------------------------------------

# Word lists (noqa SIM905): one line of tag names reads better than 34 lines of quoted strings.
# Site chrome and non-content; <head> and <title> matter only for pages without a <body>.
_DROPPED_TAGS = frozenset(
    "nav header footer aside script style noscript form template head title".split()  # noqa: SIM905
)
_BLOCK_TAGS = frozenset(
    "address article blockquote dd details dialog div dl dt fieldset figcaption figure hr "  # noqa: SIM905
    "main ol p section summary table tbody tfoot thead ul".split()
)
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
# A private-use character marks <br>: it survives whitespace collapsing, then becomes "\n".
_BR = "\ue000"
# Text that would read as a heading or code fence to the chunker is escaped, as in Markdown.
_MARKDOWN_SYNTAX = re.compile(r"^(?=#|```|~~~)", re.MULTILINE)


def _is_boilerplate(tag: Tag) -> bool:
    if "navigation" in str(tag.get("role", "")).lower().split():
        return True
    if tag.name == "header":
        # Inside <main> or <article> a <header> holds the article's own heading; elsewhere it
        # is the site banner.
        return tag.find_parent(["main", "article"]) is None
    return tag.name in _DROPPED_TAGS


def _inline_text(tag: Tag) -> str:
    return " ".join(tag.get_text().split())


class _MarkdownWriter:
    """Collects Markdown blocks; inline text is whitespace-collapsed, as a browser shows it."""

    def __init__(self) -> None:
        self._blocks: list[tuple[str, bool]] = []  # (text, tight): list items, table rows
        self._inline: list[str] = []
        self._marker = ""

    def text(self, value: str) -> None:
        self._inline.append(value)

    def list_item(self, marker: str) -> None:
        self.block()
        self._marker = marker

    def block(self, text: str = "", *, tight: bool = False) -> None:
        """End the pending inline text (as a list item if one is open), then add `text`."""
        inline = " ".join("".join(self._inline).split())
        inline = re.sub(f" ?{_BR} ?", "\n", inline).strip()
        self._inline.clear()
        if inline:
            escaped = _MARKDOWN_SYNTAX.sub("\\\\", inline)
            self._blocks.append((self._marker + escaped, bool(self._marker)))
            self._marker = ""
        if text:
            self._blocks.append((text, tight))

    def markdown(self) -> str:
        self.block()
        out: list[str] = []
        previous_tight = False
        for text, tight in self._blocks:
            # Consecutive list items and table rows stay one paragraph for the chunker.
            if out:
                out.append("\n" if tight and previous_tight else "\n\n")
            out.append(text)
            previous_tight = tight
        return "".join(out) + "\n" if out else ""


def _render_children(node: Tag, writer: _MarkdownWriter, depth: int) -> None:
    for child in node.children:
        if isinstance(child, Tag):
            _render_tag(child, writer, depth)
        # Comments, doctypes and processing instructions are NavigableString subclasses too.
        elif type(child) is NavigableString or isinstance(child, CData):
            writer.text(str(child))


def _render_tag(tag: Tag, writer: _MarkdownWriter, depth: int) -> None:
    if tag.name in _HEADINGS:
        heading = _inline_text(tag)
        if heading:
            writer.block("#" * _HEADINGS[tag.name] + " " + heading)
    elif tag.name == "br":
        writer.text(_BR)
    elif tag.name == "pre":
        code = tag.get_text().strip("\n")
        if code.strip():
            writer.block(f"```\n{code}\n```")
    elif tag.name == "li":
        parent = tag.parent
        number = len(tag.find_previous_siblings("li")) + 1
        marker = f"{number}." if parent is not None and parent.name == "ol" else "-"
        writer.list_item("  " * depth + marker + " ")
        _render_children(tag, writer, depth + 1)
        writer.block()
    elif tag.name == "tr":
        cells = [_inline_text(cell) for cell in tag.find_all(["th", "td"], recursive=False)]
        if any(cells):
            writer.block(" | ".join(cells), tight=True)
    elif tag.name in _BLOCK_TAGS:
        writer.block()
        _render_children(tag, writer, depth)
        writer.block()
    else:
        _render_children(tag, writer, depth)
