"""The architecture codec, under the name the documentation has always given it.

The one implementation lives in the shared contract, katib_nas.contract.codec.
"""

from katib_nas.contract.codec import CodecError, decode, decode_op, encode, encode_cell, encode_op, from_dict, to_dict

__all__ = ["CodecError", "decode", "decode_op", "encode", "encode_cell", "encode_op", "from_dict", "to_dict"]
