"""XMP packets read: found in any bytes, parsed within size and depth bounds, keywords and description out."""

from __future__ import annotations

import xml.etree.ElementTree as ET
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
class Packet:
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
    pkt = parse_packet(packet)
    found = {tag: find_property(pkt.descs, tag)[1] for tag in (SUBJECT, HIERARCHICAL, TAGS_LIST, DESCRIPTION, SOURCES)}
    return XmpFacts(tuple(values_of(found[SUBJECT])), tuple(values_of(found[HIERARCHICAL])),
                    tuple(values_of(found[TAGS_LIST])), description_of(found[DESCRIPTION]),
                    tuple(values_of(found[SOURCES])))


def parse_packet(data: bytes) -> Packet:
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
        rdf = add_child(root, RDF_RDF, 1)
    descs = rdf.findall(DESC) or [add_child(rdf, DESC, 2, {ABOUT: ""})]
    return Packet(root, rdf, descs, builder.decls)


def find_property(descs: list[ET.Element], tag: str) -> tuple[ET.Element | None, ET.Element | str | None]:
    """The first rdf:Description holding the property, and its element (or attribute value)."""
    for desc in descs:
        elem = next((child for child in desc if child.tag == tag), None)
        if elem is not None:
            return desc, elem
        if tag in desc.attrib:
            return desc, desc.attrib[tag]
    return None, None


def container_of(elem: ET.Element) -> ET.Element | None:
    return next((c for c in elem if c.tag in (BAG, SEQ, ALT)), None)


def _li_text(li: ET.Element) -> str:
    value = li.find(VALUE) if len(li) else None  # a qualified value carries its text in rdf:value
    return (value.text if value is not None else li.text) or ""


def values_of(found: ET.Element | str | None) -> list[str]:
    if found is None or isinstance(found, str):
        return [found] if found and found.strip() else []
    container = container_of(found)
    if container is None:
        return [found.text] if found.text and found.text.strip() else []
    return [_li_text(li) for li in container if li.tag == LI]


def description_of(found: ET.Element | str | None) -> str | None:
    """The x-default text (else the first language's), or None when there is none worth keeping."""
    if isinstance(found, ET.Element):
        alt = container_of(found)
        items = [li for li in alt if li.tag == LI] if alt is not None else []
        best = next((li for li in items if li.get(LANG) == "x-default"), items[0] if items else None)
        found = _li_text(best) if best is not None else (found.text if alt is None else None)
    return found if found and found.strip() else None


def add_child(parent: ET.Element, tag: str, depth: int, attrib: dict | None = None, *,
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
