import logging

from evpn_agent.logs import KeyValueFormatter


def test_key_value_lines_quote_the_message() -> None:
    record = logging.LogRecord("evpn_agent.state", logging.WARNING, "x", 1,
                               'VNI %d said "hi"\nbye', (100,), None)  # fmt: skip
    line = KeyValueFormatter().format(record)
    assert " level=warning logger=evpn_agent.state " in line
    assert line.endswith('msg="VNI 100 said \\"hi\\"\\nbye"')
    assert "\n" not in line
