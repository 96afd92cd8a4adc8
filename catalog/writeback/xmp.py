"""XMP keywords and descriptions merged into packets and sidecars without losing anything a person wrote."""

from __future__ import annotations

import os
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

X = "adobe:ns:meta/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DC = "http://purl.org/dc/elements/1.1/"
LR = "http://ns.adobe.com/lightroom/1.0/"
DIGIKAM = "http://www.digikam.org/ns/1.0/"
XML = "http://www.w3.org/XML/1998/namespace"
# Our own namespace: catalog:Sources, an rdf:Seq with one entry per source whose keywords we
# wrote, "source; provider model; date; keyword, keyword" (see catalog.sources.provenance).
CATALOG = "http://ns.catalog.invalid/provenance/1.0/"
PREFIXES = {X: "x", RDF: "rdf", DC: "dc", LR: "lr", DIGIKAM: "digiKam", CATALOG: "catalog"}

SUBJECT, DESCRIPTION = f"{{{DC}}}subject", f"{{{DC}}}description"
HIERARCHICAL, TAGS_LIST = f"{{{LR}}}hierarchicalSubject", f"{{{DIGIKAM}}}TagsList"
SOURCES = f"{{{CATALOG}}}Sources"
XMPMETA, XAPMETA = f"{{{X}}}xmpmeta", f"{{{X}}}xapmeta"
RDF_RDF, DESC, ABOUT, VALUE = (f"{{{RDF}}}{n}" for n in ("RDF", "Description", "about", "value"))
BAG, SEQ, ALT, LI = (f"{{{RDF}}}{n}" for n in ("Bag", "Seq", "Alt", "li"))
LANG = f"{{{XML}}}lang"

HEADER = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'.encode()
TRAILER = b'\n<?xpacket end="w"?>'
EMPTY = (f'<x:xmpmeta xmlns:x="{X}">\n <rdf:RDF xmlns:rdf="{RDF}">\n'
         '  <rdf:Description rdf:about=""/>\n </rdf:RDF>\n</x:xmpmeta>').encode()
# Escapes that make a parse give back exactly these characters (a bare CR or an attribute's
# newline or tab would otherwise be normalised away).
TEXT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
ATTR = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;", '"': "&quot;", "\n": "&#10;", "\t": "&#9;"})
# Characters XML 1.0 cannot carry at all (controls, lone surrogates): dropped from what we write.
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Bounds on what we parse. Real packets nest about a dozen levels (structs in a Bag in a
# Description) and stay well under a few MB even with Lightroom's develop history; beyond
# these a file is left alone with a message, not read whole or walked recursively.
MAX_DEPTH = 100
MAX_BYTES = 16 << 20


@dataclass(frozen=True)
class XmpFacts:
    """What a packet says about keywords and description, as the catalogue compares them."""

    subject: tuple[str, ...] = ()
    hierarchical: tuple[str, ...] = ()
    tags_list: tuple[str, ...] = ()
    description: str | None = None
    sources: tuple[str, ...] = ()  # catalog:Sources: who made our keywords, with which model, when


@dataclass(frozen=True)
class _Packet:
    """A parsed packet plus which element declared which prefix, so prefixes come back unchanged."""

    root: ET.Element
    rdf: ET.Element
    descs: list[ET.Element]
    decls: dict[ET.Element, dict[str, str]]


class _Builder(ET.TreeBuilder):
    """A TreeBuilder that keeps comments and records namespace declarations per element."""

    def __init__(self):
        super().__init__(insert_comments=True, insert_pis=True)
        self.decls: dict[ET.Element, dict[str, str]] = {}
        self._pending: dict[str, str] = {}
        self._depth = 0

    def start_ns(self, prefix, uri):
        self._pending[prefix] = uri

    def doctype(self, name, pubid, system):
        raise ValueError("not a valid XMP packet: it has a DOCTYPE, which XMP forbids (and entities could explode)")

    def start(self, tag, attrs):
        self._depth += 1
        if self._depth > MAX_DEPTH:  # expat itself has no depth limit; our serializer recurses
            raise ValueError(f"the XMP nests deeper than {MAX_DEPTH} levels: left alone")
        elem = super().start(tag, attrs)
        if self._pending:
            self.decls[elem], self._pending = self._pending, {}
        return elem

    def end(self, tag):
        self._depth -= 1
        return super().end(tag)


def find_xmp_packet(data: bytes) -> bytes | None:
    """The first XMP packet in any bytes (a JPEG, a sidecar), xpacket wrapper included when present."""
    wrapper, meta = data.find(b"<?xpacket begin"), data.find(b"<x:xmpmeta")
    if wrapper >= 0 and (meta < 0 or wrapper < meta) and (end := data.find(b"<?xpacket end", wrapper)) >= 0:
        if (close := data.find(b"?>", end)) >= 0:
            return data[wrapper:close + 2]
    end = data.find(b"</x:xmpmeta>", meta) if meta >= 0 else -1
    return data[meta:end + len(b"</x:xmpmeta>")] if end >= 0 else None


def read_xmp(packet: bytes) -> XmpFacts:
    """Keywords and description of a packet (or a whole sidecar); ValueError if it cannot be parsed."""
    pkt = _parse(packet)
    found = {tag: _find(pkt.descs, tag)[1] for tag in (SUBJECT, HIERARCHICAL, TAGS_LIST, DESCRIPTION, SOURCES)}
    return XmpFacts(tuple(_values(found[SUBJECT])), tuple(_values(found[HIERARCHICAL])),
                    tuple(_values(found[TAGS_LIST])), _description(found[DESCRIPTION]),
                    tuple(_values(found[SOURCES])))


def merge_xmp(existing: bytes | None, *, add: Sequence[str], remove: Sequence[str],
              description: str | None, replace_description: bool, parent: str = "auto",
              sources: Sequence[str] | None = None) -> bytes:
    """A complete packet: `existing` kept as it was except for our own keywords and the description.

    dc:subject keeps its entries in order, loses the `remove` entries (exact match) and gains
    the `add` entries that are not already there (compared NFC-normalised and case-folded, so a
    person's "Beach" is never doubled by our "beach"); lr:hierarchicalSubject and
    digiKam:TagsList do the same with `parent|k` and `parent/k` (a nested parent is written
    "a|b"; digiKam gets "a/b"), and are created when missing. The description (x-default) is
    set when `replace_description` is true or when the packet has none; otherwise the person's
    stays. A keyword in both `add` and `remove` is kept. `sources`, when given, replaces
    catalog:Sources (ours alone). Raises ValueError for a packet we cannot parse: the caller
    must then leave that file alone.
    """
    parent = _clean(parent)
    if not parent.strip():
        raise ValueError("the keyword parent must not be empty")
    add = [k for k in map(_clean, add) if k.strip()]
    remove = [k for k in map(_clean, remove) if k.strip() and k not in add]
    pkt = _parse(existing if existing and existing.strip() else EMPTY)
    _update_list(pkt, SUBJECT, BAG, remove, add)
    for tag, kind, prefix in ((HIERARCHICAL, BAG, f"{parent}|"), (TAGS_LIST, SEQ, f"{parent.replace('|', '/')}/")):
        _update_list(pkt, tag, kind, [prefix + k for k in remove], [prefix + k for k in add])
    if description and _clean(description).strip():
        _update_description(pkt, _clean(description), replace_description)
    old = _values(_find(pkt.descs, SOURCES)[1])
    if sources is not None and old != [_clean(s) for s in sources]:
        _update_list(pkt, SOURCES, SEQ, old, [_clean(s) for s in sources])
    out: list[str] = []
    _serialize(pkt.root, pkt.decls, {}, out)
    return HEADER + "".join(out).encode("utf-8") + TRAILER


def sidecar_path(photo: str, *, style: str = "ext", sidecar_dir: str | None = None,
                 root: str | None = None) -> str:
    """Where a photo's sidecar lives: `IMG.JPG.xmp` (darktable, digiKam) or `IMG.xmp` (Lightroom),
    beside the photo or, for read-only shares, at the same relative path under `sidecar_dir`."""
    photo = os.fspath(photo)
    if style not in ("ext", "base"):
        raise ValueError(f"unknown sidecar style {style!r} (use 'ext' for IMG.JPG.xmp or 'base' for IMG.xmp)")
    target = photo + ".xmp" if style == "ext" else os.path.splitext(photo)[0] + ".xmp"
    if sidecar_dir is None:
        return target
    if root is None:
        raise ValueError("a sidecar folder needs the library root the photo's path is relative to")
    rel = os.path.relpath(os.path.abspath(target), os.path.abspath(root))
    if rel == os.curdir or rel == os.pardir or rel.startswith(os.pardir + os.sep):
        raise ValueError(f"{photo!r} is not inside the library root {root!r}")
    return os.path.join(os.fspath(sidecar_dir), rel)


def write_sidecar(path: str, packet: bytes, **options):
    """Create or replace a sidecar atomically (see atomic.atomic_write, which takes `options`),
    creating its folder in a mirror tree; a crash or a full disk never leaves half a sidecar."""
    from catalog.writeback.atomic import atomic_write

    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    return atomic_write(os.fspath(path), packet, **options)


def _parse(data: bytes) -> _Packet:
    """The packet's tree, always x:xmpmeta/rdf:RDF/rdf:Description; ValueError for anything else."""
    if len(data) > MAX_BYTES:
        raise ValueError(f"the XMP is {len(data):,} bytes, over the {MAX_BYTES:,}-byte limit: left alone")
    builder = _Builder()
    parser = ET.XMLParser(target=builder)
    try:
        parser.feed(find_xmp_packet(data) or data)
        root = parser.close()
    except ET.ParseError as err:
        raise ValueError(f"cannot parse the XMP packet: {err}") from None
    if root.tag == RDF_RDF:  # a bare rdf:RDF sidecar: give it the x:xmpmeta wrapper
        root, wrapped = ET.Element(XMPMETA), root
        root.text, wrapped.tail = "\n", "\n"
        root.append(wrapped)
        builder.decls[root] = {"x": X}
    elif root.tag not in (XMPMETA, XAPMETA):
        raise ValueError(f"not an XMP packet: the root element is {root.tag!r}, not x:xmpmeta")
    rdf = root.find(RDF_RDF)
    if rdf is None:
        rdf = _add(root, RDF_RDF, 1)
    descs = rdf.findall(DESC) or [_add(rdf, DESC, 2, {ABOUT: ""})]
    return _Packet(root, rdf, descs, builder.decls)


def _find(descs: list[ET.Element], tag: str) -> tuple[ET.Element | None, ET.Element | str | None]:
    """The first rdf:Description holding the property, and its element (or attribute value)."""
    for desc in descs:
        elem = next((child for child in desc if child.tag == tag), None)
        if elem is not None:
            return desc, elem
        if tag in desc.attrib:
            return desc, desc.attrib[tag]
    return None, None


def _container(elem: ET.Element) -> ET.Element | None:
    return next((c for c in elem if c.tag in (BAG, SEQ, ALT)), None)


def _li_text(li: ET.Element) -> str:
    value = li.find(VALUE) if len(li) else None  # a qualified value carries its text in rdf:value
    return (value.text if value is not None else li.text) or ""


def _values(found: ET.Element | str | None) -> list[str]:
    if found is None or isinstance(found, str):
        return [found] if found and found.strip() else []
    container = _container(found)
    if container is None:
        return [found.text] if found.text and found.text.strip() else []
    return [_li_text(li) for li in container if li.tag == LI]


def _description(found: ET.Element | str | None) -> str | None:
    """The x-default text (else the first language's), or None when there is none worth keeping."""
    if isinstance(found, ET.Element):
        alt = _container(found)
        items = [li for li in alt if li.tag == LI] if alt is not None else []
        best = next((li for li in items if li.get(LANG) == "x-default"), items[0] if items else None)
        found = _li_text(best) if best is not None else (found.text if alt is None else None)
    return found if found and found.strip() else None


def _update_list(pkt: _Packet, tag: str, kind: str, remove: list[str], add: list[str]) -> None:
    """Edit the Bag/Seq in place, so the order, other entries and their qualifiers stay as they were."""
    current = _values(_find(pkt.descs, tag)[1])
    drop = set(remove)
    seen = {_key(v) for v in current if v not in drop}
    new = []
    for value in add:
        if _key(value) not in seen:
            seen.add(_key(value))
            new.append(value)
    if not new and drop.isdisjoint(current):
        return  # nothing to change: leave the property exactly as written
    container = _editable(pkt, tag, kind)
    for li in [li for li in container if li.tag == LI and not len(li) and (li.text or "") in drop]:
        _remove(container, li)
    for value in new:
        _add(container, LI, 5).text = value


def _update_description(pkt: _Packet, text: str, replace: bool) -> None:
    if not replace and _description(_find(pkt.descs, DESCRIPTION)[1]) is not None:
        return
    alt = _editable(pkt, DESCRIPTION, ALT)
    li = next((li for li in alt if li.tag == LI and li.get(LANG) == "x-default"), None)
    if li is None:  # x-default comes first in an Alt; other languages stay
        li = _add(alt, LI, 5, {LANG: "x-default"}, first=True)
    del li[:]  # a qualified old value goes with it
    li.text = text


def _editable(pkt: _Packet, tag: str, kind: str) -> ET.Element:
    """The property's container, created, or converted from attribute or text form, so it is never written twice."""
    desc, found = _find(pkt.descs, tag)
    if isinstance(found, ET.Element):
        elem = found
    else:
        if desc is None:  # new: beside other properties of its namespace, else in the first one
            ns = tag.split("}")[0]
            desc = next((d for d in pkt.descs if any(str(name).split("}")[0] == ns for name in
                                                     [*d.attrib, *(c.tag for c in d)])), pkt.descs[0])
        else:
            del desc.attrib[tag]
        _declare(pkt, desc, tag)
        elem = _add(desc, tag, 3)
        elem.text = found
    container = _container(elem)
    if container is None:
        value, elem.text = elem.text, None
        container = _add(elem, kind, 4)
        if value and value.strip():
            _add(container, LI, 5, {LANG: "x-default"} if kind == ALT else None).text = value
    return container


def _declare(pkt: _Packet, desc: ET.Element, tag: str) -> None:
    """Declare a new property's namespace on its rdf:Description, where XMP tools expect it."""
    uri = tag[1:].split("}")[0]
    scope = {**pkt.decls.get(pkt.root, {}), **pkt.decls.get(pkt.rdf, {}), **pkt.decls.get(desc, {})}
    if uri not in scope.values():
        pkt.decls.setdefault(desc, {})[_free_prefix(uri, scope)] = uri


def _free_prefix(uri: str, scope: dict[str, str]) -> str:
    base = PREFIXES.get(uri, "ns")
    return next(p for p in (base, *(f"{base}{n}" for n in range(1, len(scope) + 2))) if scope.get(p, uri) == uri)


def _add(parent: ET.Element, tag: str, depth: int, attrib: dict | None = None, *,
         first: bool = False) -> ET.Element:
    """A new child indented like its siblings (or `depth` spaces), so sidecars stay readable."""
    child = ET.Element(tag, attrib or {})
    pad = "\n" + " " * depth
    if not len(parent):
        parent.text, child.tail = pad, pad[:-1]
        parent.append(child)
        return child
    sep = parent.text if not (parent.text or "").strip() else pad
    if first:
        child.tail = sep
        parent.insert(0, child)
    else:
        child.tail, parent[-1].tail = parent[-1].tail, sep
        parent.append(child)
    return child


def _remove(parent: ET.Element, child: ET.Element) -> None:
    index = list(parent).index(child)
    if index == len(parent) - 1:  # the last child's tail is the closing indent: hand it on
        if index:
            parent[index - 1].tail = child.tail
        else:
            parent.text = child.tail
    parent.remove(child)


def _serialize(elem: ET.Element, decls: dict, scope: dict[str, str], out: list[str]) -> None:
    """XML with the input's own prefixes and declarations (ElementTree alone would rename them)."""
    if elem.tag is ET.Comment or elem.tag is ET.ProcessingInstruction:
        out.append(f"<!--{elem.text or ''}-->" if elem.tag is ET.Comment else f"<?{elem.text or ''}?>")
    else:
        own = dict(decls.get(elem, {}))
        scope = {**scope, **own}
        tag = _qname(elem.tag, scope, own, attr=False)
        attrs = "".join(f' {_qname(k, scope, own, attr=True)}="{v.translate(ATTR)}"' for k, v in elem.attrib.items())
        out.append("<" + tag + "".join(f' xmlns{":" if p else ""}{p}="{u.translate(ATTR)}"' for p, u in own.items()) + attrs)
        if len(elem) or elem.text:
            out.append(">" + (elem.text or "").translate(TEXT))
            for child in elem:
                _serialize(child, decls, scope, out)
            out.append(f"</{tag}>")
        else:
            out.append("/>")
    out.append((elem.tail or "").translate(TEXT))


def _qname(name: str, scope: dict[str, str], own: dict[str, str], *, attr: bool) -> str:
    """prefix:local for an expanded name, declaring a prefix on this element if none is in scope."""
    if not name.startswith("{"):
        return name
    uri, local = name[1:].split("}", 1)
    if uri == XML:
        return f"xml:{local}"
    prefix = next((p for p, u in scope.items() if u == uri and (p or not attr)), None)
    if prefix is None:  # attributes cannot use the default namespace
        prefix = _free_prefix(uri, {p: u for p, u in scope.items() if p})
        own[prefix] = scope[prefix] = uri
    return f"{prefix}:{local}" if prefix else local


def _clean(value: str) -> str:
    return NOT_XML.sub("", value)


def _key(value: str) -> str:
    """Keywords that look the same to a person ("Café" typed or pasted decomposed, "café") are one."""
    return unicodedata.normalize("NFC", value).casefold()
