from nfc.tag import Tag, TagCommandError

class Type4TagCommandError(TagCommandError): ...

class Type4Tag(Tag):
    def transceive(
        self, data: bytes | bytearray, timeout: float | None = None
    ) -> bytearray | None: ...
