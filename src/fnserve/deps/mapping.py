"""Import name -> distribution name (SPEC §7, issue 5 item 1).

Three layers, highest precedence first:

1. the user's ``[tool.fnserve.import-map]`` (``{"import.name": "Distribution"}``);
2. ``CURATED`` below: fnserve's corrections of stale pipreqs entries (``bcrypt``, ``docker``, ...)
   and additions for packages that appeared since (``google.protobuf``, ``google.cloud.*``, ...);
3. pipreqs' vendored mapping (``fnserve.deps._pipreqs_mapping``, Apache-2.0, ~1,150 entries).

Lookups try the longest dotted prefix first, so ``google.protobuf.message`` resolves through
``google.protobuf`` before ``google``. A name found nowhere maps to itself (``flask`` -> ``flask``),
which is what most distributions do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from fnserve.deps._pipreqs_mapping import PIPREQS_MAPPING

# fnserve's own curation: modern names where pipreqs is stale, and well-known packages it lacks.
CURATED_TEXT = """\
yaml:PyYAML
PIL:Pillow
cv2:opencv-python
sklearn:scikit-learn
skimage:scikit-image
jwt:PyJWT
bs4:beautifulsoup4
dotenv:python-dotenv
google.protobuf:protobuf
google.auth:google-auth
google.oauth2:google-auth
google.api_core:google-api-core
google.genai:google-genai
google.generativeai:google-generativeai
google.cloud.storage:google-cloud-storage
google.cloud.firestore:google-cloud-firestore
google.cloud.bigquery:google-cloud-bigquery
google.cloud.pubsub:google-cloud-pubsub
google.cloud.pubsub_v1:google-cloud-pubsub
google.cloud.secretmanager:google-cloud-secret-manager
googleapiclient:google-api-python-client
bcrypt:bcrypt
docker:docker
dateutil:python-dateutil
attr:attrs
attrs:attrs
magic:python-magic
jose:python-jose
multipart:python-multipart
slugify:python-slugify
socketio:python-socketio
engineio:python-engineio
websocket:websocket-client
serial:pyserial
Crypto:pycryptodome
OpenSSL:pyOpenSSL
fitz:PyMuPDF
docx:python-docx
pptx:python-pptx
psycopg2:psycopg2-binary
MySQLdb:mysqlclient
pymysql:PyMySQL
sqlalchemy:SQLAlchemy
requests:requests
markdown:Markdown
dns:dnspython
telegram:python-telegram-bot
discord:discord.py
github:PyGithub
git:GitPython
zmq:pyzmq
usb:pyusb
Levenshtein:python-Levenshtein
ruamel.yaml:ruamel.yaml
faiss:faiss-cpu
tensorflow:tensorflow
torch:torch
pydantic_settings:pydantic-settings
starlette:starlette
fasthtml:python-fasthtml
mangum:mangum
supabase:supabase
openai:openai
anthropic:anthropic
redis:redis
pymongo:pymongo
bson:pymongo
azure.storage.blob:azure-storage-blob
azure.identity:azure-identity
azure.cosmos:azure-cosmos
qcloud_cos:cos-python-sdk-v5
tencentcloud:tencentcloud-sdk-python
"""


def parse_mapping(text: str) -> dict[str, str]:
    """Parse ``import_name:distribution`` lines (``#`` comments and blanks ignored); last wins."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        name, _, dist = line.partition(":")
        out[name.strip()] = dist.strip()
    return out


# Namespace packages whose distributions follow a naming rule: google.cloud.storage ->
# google-cloud-storage, azure.storage.blob -> azure-storage-blob (prefix length, separator).
_NAMESPACE_RULES = {("google", "cloud"): 3, ("azure",): 3}


def _namespace_distribution(parts: list[str]) -> tuple[str, str] | None:
    for head, depth in _NAMESPACE_RULES.items():
        if tuple(parts[: len(head)]) == head and len(parts) >= depth:
            dist = "-".join(p.replace("_", "-") for p in parts[:depth])
            return dist, ".".join(parts[:depth])
    return None


@dataclass(frozen=True)
class ImportMap:
    """The merged mapping. ``overrides``: the user's ``[tool.fnserve.import-map]``."""

    overrides: Mapping[str, str] = field(default_factory=dict)
    table: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, overrides: Mapping[str, str] | None = None) -> ImportMap:
        """Merge the three layers once; ``overrides`` win over ``CURATED``, which wins over pipreqs."""
        table = parse_mapping(PIPREQS_MAPPING)
        table.update(parse_mapping(CURATED_TEXT))
        table.update(dict(overrides or {}))
        return cls(overrides=dict(overrides or {}), table=table)

    def distribution_for(self, module: str) -> tuple[str, str]:
        """``module``: a dotted import name (``google.protobuf.message``). Returns
        ``(distribution, matched_prefix)``; the distribution is the module's top-level name when no
        prefix is mapped. A mapping to ``""`` means "provided by nothing to install" (skip)."""
        parts = module.split(".")
        namespace = _namespace_distribution(parts)
        for n in range(len(parts), 0, -1):
            prefix = ".".join(parts[:n])
            if namespace and n < namespace[1].count(".") + 1:
                return namespace  # google.cloud.X unknown: the naming rule beats the bare "google"
            if prefix in self.table:
                return self.table[prefix], prefix
        return parts[0], parts[0]

    def __len__(self) -> int:
        return len(self.table)
