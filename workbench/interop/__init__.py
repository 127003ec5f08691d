"""Other tools' formats: trtexec outputs and commands (:mod:`.trtexec`), Triton model repositories (:mod:`.triton`)."""
