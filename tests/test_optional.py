"""The one helper for optional packages: one line with what it is for and how to install it, cause kept."""

from __future__ import annotations

import pytest

import workbench as wb


def test_a_missing_optional_package_is_one_line_with_the_install_hint():
    from workbench._optional import optional_import

    with pytest.raises(wb.WorkbenchError) as caught:
        optional_import("no_such_package_xyz.sub", purpose="do the thing", extra="cpu")
    message = str(caught.value)
    assert "\n" not in message and "needed to do the thing" in message
    assert message.endswith("pip install 'trt-workbench[cpu]'")
    assert isinstance(caught.value.__cause__, ImportError)  # the cause is kept for a traceback
    with pytest.raises(wb.WorkbenchError, match="pip install pillow$"):
        optional_import("no_such_package_xyz", purpose="x", package="pillow")
