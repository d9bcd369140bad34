"""merchant_text: text features of a merchant name, in plain Python.

This is the kind of feature data scientists write in Python and would otherwise port by
hand to the serving stack: Unicode normalization, tokenization with a regular
expression, and a stable hash bucket. It uses only the standard library (unicodedata,
re, hashlib), so the component needs no package beyond the SDK.

The bucket is stable across processes, machines and Python versions: it hashes the
normalized name with BLAKE2b (not Python's salted ``hash``).
"""

import hashlib
import re
import unicodedata

from skewless import INT64, UTF8, transform

#: How many hash buckets a merchant name falls into.
BUCKETS = 1024
_TOKEN = re.compile(r"[^\W_]+")
#: Words that say a merchant is one store of a chain or a marketplace seller.
_CHAIN_WORDS = frozenset({"inc", "llc", "ltd", "corp", "store", "stores", "shop", "market", "co"})


def normalize(name: str) -> str:
    """NFKC, case-folded, accents stripped, whitespace collapsed."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    decomposed = unicodedata.normalize("NFKD", folded)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.split())


def tokens(name: str) -> list:
    return _TOKEN.findall(normalize(name))


def bucket(name: str) -> int:
    digest = hashlib.blake2b(" ".join(tokens(name)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % BUCKETS


@transform(
    inputs={"merchant_name": UTF8},
    outputs={
        "merchant_name_normalized": UTF8,
        "merchant_token_count": INT64,
        "merchant_name_bucket": INT64,
        "merchant_chain_words": INT64,
    },
)
def merchant_text(names):
    normalized, counts, buckets, chain = [], [], [], []
    for name in names:
        if name is None:
            normalized.append(None)
            counts.append(None)
            buckets.append(None)
            chain.append(None)
            continue
        words = tokens(name)
        normalized.append(" ".join(words))
        counts.append(len(words))
        buckets.append(bucket(name))
        chain.append(sum(1 for w in words if w in _CHAIN_WORDS))
    return normalized, counts, buckets, chain
