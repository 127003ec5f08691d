"""One channel for messages: the modules' loggers, shown once by the CLI's console, gathered into a Run's notes."""

import io
import logging
import threading
import warnings

from workbench.messages import collected, console
from workbench.precision.variant import _captured_output


def test_the_console_shows_each_text_once_as_a_note_or_a_warning(capsys):
    with console() as shown:
        logging.getLogger("workbench.pipeline").info("backend chosen: onnxruntime")
        logging.getLogger("workbench.sweeps.runner").info("backend  chosen:\n onnxruntime")  # one text
        logging.getLogger("workbench.precision.calibration").warning("21 calibration samples is outside the range")
        logging.getLogger("workbench.precision.calibration").warning("21 calibration samples is outside the range")
        logging.getLogger("onnxruntime").info("a library's chatter")
        warnings.warn("a library's deprecation", DeprecationWarning, stacklevel=1)
        warnings.warn("a library's deprecation", DeprecationWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "note: backend chosen: onnxruntime",
        "warning: 21 calibration samples is outside the range",
        "warning: a library's deprecation",
    ]
    assert shown.shown("backend chosen: onnxruntime") and not shown.shown("a library's chatter")
    logging.getLogger("workbench.pipeline").warning("after the command")  # the console is gone with its block
    assert "note:" not in capsys.readouterr().err


def test_a_quiet_console_keeps_the_warnings_and_leaves_the_notes_to_the_run(capsys):
    with console(notes=False) as shown:
        logging.getLogger("workbench.pipeline").info("backend chosen: onnxruntime")
        logging.getLogger("workbench.pipeline").warning("dynamic input shapes not given")
    assert capsys.readouterr().err == "warning: dynamic input shapes not given\n"
    assert not shown.shown("backend chosen: onnxruntime")  # the CLI prints it with the run's notes


def test_collected_gathers_the_blocks_messages_of_its_thread_once_in_order():
    log = logging.getLogger("workbench.test")
    with collected() as said:
        log.info("first")
        log.warning("second")
        log.info("first")
        log.debug("not a message")
        other = threading.Thread(target=log.warning, args=("another run's",))
        other.start()
        other.join()
    log.info("after")
    assert said == ["first", "second"]
    with collected(logging.WARNING) as warned:
        log.info("a note")
        log.warning("a warning")
    assert warned == ["a warning"]


def test_modelopts_captured_output_leaves_the_workbench_heard(capsys):
    buffer = io.StringIO()
    with console():
        with _captured_output(buffer):
            logging.getLogger("modelopt.onnx").warning("ModelOpt's own line")
            logging.getLogger("onnxslim").warning("a library under ModelOpt")
            print("a print")
            logging.getLogger("workbench.precision.calibration").warning("said inside the capture")
        logging.getLogger("workbench.pipeline").info("said after it")
    err = capsys.readouterr().err
    assert err.splitlines() == ["warning: said inside the capture", "note: said after it"]
    assert "ModelOpt's own line" in buffer.getvalue() and "a print" in buffer.getvalue()
    assert "a library under ModelOpt" in buffer.getvalue()
