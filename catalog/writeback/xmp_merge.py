"""XMP keywords and descriptions merged into packets without losing anything a person wrote."""

from __future__ import annotations

import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from catalog.writeback.xmp import (ALT, BAG, DESCRIPTION, HIERARCHICAL, LANG, LI, PREFIXES, RDF, SEQ, SOURCES,
                                   SUBJECT, TAGS_LIST, X, XML, Packet, add_child, container_of, description_of,
                                   find_property, parse_packet, values_of)

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
    pkt = parse_packet(existing if existing and existing.strip() else EMPTY)
    _update_list(pkt, SUBJECT, BAG, remove, add)
    for tag, kind, prefix in ((HIERARCHICAL, BAG, f"{parent}|"), (TAGS_LIST, SEQ, f"{parent.replace('|', '/')}/")):
        _update_list(pkt, tag, kind, [prefix + k for k in remove], [prefix + k for k in add])
    if description and _clean(description).strip():
        _update_description(pkt, _clean(description), replace_description)
    old = values_of(find_property(pkt.descs, SOURCES)[1])
    if sources is not None and old != [_clean(s) for s in sources]:
        _update_list(pkt, SOURCES, SEQ, old, [_clean(s) for s in sources])
    out: list[str] = []
    _serialize(pkt.root, pkt.decls, {}, out)
    return HEADER + "".join(out).encode("utf-8") + TRAILER


def _update_list(pkt: Packet, tag: str, kind: str, remove: list[str], add: list[str]) -> None:
    """Edit the Bag/Seq in place, so the order, other entries and their qualifiers stay as they were."""
    current = values_of(find_property(pkt.descs, tag)[1])
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
        add_child(container, LI, 5).text = value


def _update_description(pkt: Packet, text: str, replace: bool) -> None:
    if not replace and description_of(find_property(pkt.descs, DESCRIPTION)[1]) is not None:
        return
    alt = _editable(pkt, DESCRIPTION, ALT)
    li = next((li for li in alt if li.tag == LI and li.get(LANG) == "x-default"), None)
    if li is None:  # x-default comes first in an Alt; other languages stay
        li = add_child(alt, LI, 5, {LANG: "x-default"}, first=True)
    del li[:]  # a qualified old value goes with it
    li.text = text


def _editable(pkt: Packet, tag: str, kind: str) -> ET.Element:
    """The property's container, created, or converted from attribute or text form, so it is never written twice."""
    desc, found = find_property(pkt.descs, tag)
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
        elem = add_child(desc, tag, 3)
        elem.text = found
    container = container_of(elem)
    if container is None:
        value, elem.text = elem.text, None
        container = add_child(elem, kind, 4)
        if value and value.strip():
            add_child(container, LI, 5, {LANG: "x-default"} if kind == ALT else None).text = value
    return container


def _declare(pkt: Packet, desc: ET.Element, tag: str) -> None:
    """Declare a new property's namespace on its rdf:Description, where XMP tools expect it."""
    uri = tag[1:].split("}")[0]
    scope = {**pkt.decls.get(pkt.root, {}), **pkt.decls.get(pkt.rdf, {}), **pkt.decls.get(desc, {})}
    if uri not in scope.values():
        pkt.decls.setdefault(desc, {})[_free_prefix(uri, scope)] = uri


def _free_prefix(uri: str, scope: dict[str, str]) -> str:
    base = PREFIXES.get(uri, "ns")
    return next(p for p in (base, *(f"{base}{n}" for n in range(1, len(scope) + 2))) if scope.get(p, uri) == uri)


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
