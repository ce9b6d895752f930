"""A small DOM from html.parser (no lxml here), for tests that read the pages' HTML: elements
with their attributes and children, text, and lookups by tag and id. Void elements are closed at
once and an end tag closes up to its nearest open match, as browsers do for well-formed pages."""

from __future__ import annotations

from html.parser import HTMLParser


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self, tag: str | None = None):
        for c in self.children:
            if isinstance(c, Node):
                if tag is None or c.tag == tag:
                    yield c
                yield from c.iter(tag)

    def find_tag(self, tag: str) -> Node:
        return next(self.iter(tag))

    def find_id(self, id_: str) -> Node:
        return next(n for n in self.iter() if n.attrs.get("id") == id_)


class DomBuilder(HTMLParser):
    VOID = {"meta", "link", "input", "br", "img", "hr", "col", "area", "base", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = self.cur = Node("#root", {}, None)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.cur)
        self.cur.children.append(node)
        if tag not in self.VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, dict(attrs), self.cur))

    def handle_endtag(self, tag):
        node = self.cur
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.cur = node.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def parse(html_text: str) -> Node:
    builder = DomBuilder()
    builder.feed(html_text)
    builder.close()
    return builder.root
