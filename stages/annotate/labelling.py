"""The labelling interface sent to Label Studio: a text shown as plain text, one choice per label."""
from __future__ import annotations

import html
from xml.sax.saxutils import quoteattr

FROM_NAME, TO_NAME = "label", "text"  # the control and object tag names of the generated labelling config
MULTI_SEP = "|"  # a multi-choice answer as one nominal value: its sorted choices joined


def label_config(labels: list[str], choice: str = "single", instructions: str = "") -> str:
    """Label Studio labelling config for text classification. The text is shown with the `Text` tag
    (plain text, never interpreted as HTML); every value is XML-escaped."""
    header = f"  <Header value={quoteattr(instructions)}/>\n" if instructions.strip() else ""
    mode = "single-radio" if choice == "single" else "multiple"
    options = "".join(f"    <Choice value={quoteattr(l)}/>\n" for l in labels)
    return (
        "<View>\n"
        f"{header}"
        f'  <Text name="{TO_NAME}" value="${TO_NAME}" saveTextResult="no"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="{mode}" showInline="true" required="true">\n'
        f"{options}"
        "  </Choices>\n"
        "</View>\n"
    )


def instructions_html(text: str) -> str:
    """Label Studio shows project instructions as HTML: escape them and keep line breaks."""
    return "<br/>".join(html.escape(line) for line in text.strip().splitlines())
