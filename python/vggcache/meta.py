"""Cache metadata (common/cache_meta.h/.cpp) and shard sets (common/shard_set.h/.cpp).

The metadata is JSON under key ``meta`` of the ``meta`` sub-database. ``validate_meta`` applies
the checks the C++ ``CacheMeta::from_json`` applies; ``combined_meta`` builds a shard set's
metadata the way ``combined_meta`` in common/shard_set.cpp does (what ``featcache merge`` writes).
"""
import copy
import json
import os

from . import image_list as _image_list
from .errors import CorruptError, IncompleteError, MismatchError, NotACacheError, SchemaError
from .records import CODEC_IDS

SCHEMA_VERSION = 3  # 3: as 2, the image list in binary; 2: records in runs, image list (JSON)
                    # under its own key; 1: one record per value; all read
OLDEST_SCHEMA_VERSION = 1
SHARD_MANIFEST = "shards.json"
MANIFEST_FORMAT = "vggcache-shard-set"

_REQUIRED = ("schema_version", "tool_version", "codec", "dim", "payload_floats", "prepool_shape",
             "classes", "source_dir", "images", "weights", "preprocess", "skipped", "complete",
             "records", "next_image")


def image_path(entry):
    """An image's relative path; exact bytes of non-UTF-8 names (``path_hex``) are decoded with
    the file-system encoding (surrogateescape), so the result opens the same file."""
    if "path_hex" in entry:
        try:
            return os.fsdecode(bytes.fromhex(entry["path_hex"]))
        except ValueError:
            raise CorruptError("malformed path_hex in cache metadata") from None
    return entry["path"]


def parse_meta(raw, where, images_raw=None):
    """``images_raw``: the image list of schemas 2 (JSON) and 3 (binary), key ``images``,
    spliced in when the metadata leaves it out."""
    try:
        m = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CorruptError(f"{where}: metadata is not valid JSON: {e}") from None
    if isinstance(m, dict) and "images" not in m and images_raw is not None:
        version = m.get("schema_version")
        # A later version than this reader reads is refused by name below, whatever its list.
        if isinstance(version, int) and version > SCHEMA_VERSION:
            m["images"] = []
        elif _image_list.is_binary(images_raw):
            m["images"] = _image_list.decode_image_list(images_raw, where)
        else:
            try:
                m["images"] = json.loads(bytes(images_raw).decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                raise CorruptError(f"{where}: the image list is not valid JSON: {e}") from None
    validate_meta(m, where)
    return m


def validate_meta(m, where):
    if not isinstance(m, dict):
        raise CorruptError(f"{where}: malformed cache metadata: not an object")
    if "schema_version" in m and not (
            isinstance(m["schema_version"], int) and
            OLDEST_SCHEMA_VERSION <= m["schema_version"] <= SCHEMA_VERSION):
        raise SchemaError(f"{where}: schema version {m['schema_version']} is not supported (this "
                          f"reader reads versions {OLDEST_SCHEMA_VERSION} to {SCHEMA_VERSION})")
    missing = [k for k in _REQUIRED if k not in m]
    if missing:
        raise CorruptError(f"{where}: malformed cache metadata: no {', '.join(missing)}")
    if m["codec"] not in CODEC_IDS:
        raise SchemaError(f"{where}: unknown codec '{m['codec']}'")
    dim, pf = m["dim"], m["payload_floats"]
    if not m["codec"].startswith("prepool-") and pf != dim:
        raise CorruptError(f"{where}: malformed cache metadata: {m['codec']} payload_floats != dim")
    if m["codec"].startswith("prepool-"):
        s = m["prepool_shape"]
        if (len(s) != 3 or min(s) <= 0 or s[0] * s[1] * s[2] != pf or s[0] * 49 != dim):
            raise CorruptError(f"{where}: malformed cache metadata: {m['codec']} needs "
                               "prepool_shape {C, h, w} with C*h*w == payload_floats and "
                               "C*49 == dim")
    cut = m.get("cut", "pool5")
    if cut not in ("pool5", "pool4"):
        raise SchemaError(f"{where}: cache cut '{cut}' is not supported (this reader reads pool5 "
                          "and pool4)")
    if cut == "pool4":
        s = m.get("cut_shape", [])
        if (m["codec"] != "raw-f32" or len(s) != 3 or min(s) <= 0 or s[0] * s[1] * s[2] != dim):
            raise CorruptError(f"{where}: malformed cache metadata: a pool4 cache needs codec "
                               "raw-f32 and cut_shape {C, h, w} with C*h*w == dim")
    if "shard" in m:
        s = m["shard"]
        if not (s["count"] > 0 and s["index"] < s["count"] and s["first"] <= s["end"]
                <= len(m["images"])):
            raise CorruptError(f"{where}: malformed cache metadata: shard needs index < count and "
                               "first <= end <= images")
    n_classes = len(m["classes"])
    for e in m["images"]:
        if not 0 <= e["label"] < n_classes:
            raise CorruptError(f"{where}: malformed cache metadata: label out of range for "
                               f"{image_path(e)}")


def is_shard_set(path):
    return os.path.isfile(os.path.join(path, SHARD_MANIFEST))


def read_shard_manifest(set_dir):
    path = os.path.join(set_dir, SHARD_MANIFEST)
    try:
        with open(path, "rb") as f:
            j = json.load(f)
    except OSError as e:
        raise NotACacheError(f"{path}: cannot read: {e}") from None
    except ValueError:
        raise CorruptError(f"{path} is not a vggcache shard-set manifest") from None
    if not isinstance(j, dict) or j.get("format") != MANIFEST_FORMAT:
        raise CorruptError(f"{path} is not a vggcache shard-set manifest")
    dirs = [os.path.normpath(s if os.path.isabs(s) else os.path.join(set_dir, s))
            for s in j.get("shards", [])]
    if not dirs:
        raise CorruptError(f"{path} lists no shards")
    return dirs


def _settings(m):
    s = {k: m[k] for k in ("codec", "dim", "payload_floats", "prepool_shape", "classes",
                           "weights", "preprocess")}
    s["cut"] = m.get("cut", "pool5")
    return s


def _describe(d, m):
    return f"{d} (shard {m['shard']['index']}/{m['shard']['count']})"


def check_shards(dirs, metas, require_complete):
    """The checks of check_shards in common/shard_set.cpp; returns the order by shard index."""
    for d, m in zip(dirs, metas):
        if "shard" not in m:
            raise MismatchError(f"{d} is not a shard (made without extract --shard)")
    count = metas[0]["shard"]["count"]
    by_index = {}
    for i, (d, m) in enumerate(zip(dirs, metas)):
        s = m["shard"]
        if s["count"] != count:
            raise MismatchError(f"{_describe(d, m)} is one of {s['count']} shards but "
                                f"{_describe(dirs[0], metas[0])} is one of {count}")
        if s["index"] in by_index:
            raise MismatchError(f"duplicated shard: {dirs[by_index[s['index']]]} and {d} are both "
                                f"shard {s['index']}/{count}")
        by_index[s["index"]] = i
        a, b = _settings(metas[0]), _settings(m)
        for k in a:
            if a[k] != b[k]:
                raise MismatchError(f"{_describe(d, m)} was made with other settings than "
                                    f"{_describe(dirs[0], metas[0])}: {k}")
        ia, ib = metas[0]["images"], m["images"]
        if len(ia) != len(ib):
            raise MismatchError(f"{_describe(d, m)}: images: {len(ia)} vs {len(ib)} files")
        for k, (x, y) in enumerate(zip(ia, ib)):
            if any(x.get(f) != y.get(f) for f in ("path", "path_hex", "sha256", "label", "bytes")):
                raise MismatchError(f"{_describe(d, m)}: images[{k}]: {image_path(x)} vs "
                                    f"{image_path(y)}")
    for k in range(count):
        if k not in by_index:
            raise MismatchError(f"shard {k}/{count} is missing (have {len(by_index)} of {count} "
                                "shards)")
    order, expect_first = [], 0
    for k in sorted(by_index):
        i = by_index[k]
        s = metas[i]["shard"]
        if s["first"] != expect_first:
            raise MismatchError(f"{_describe(dirs[i], metas[i])} holds images [{s['first']}, "
                                f"{s['end']}) but the shards before it end at image "
                                f"{expect_first}: the shards were cut differently")
        expect_first = s["end"]
        order.append(i)
    if expect_first != len(metas[0]["images"]):
        raise MismatchError(f"the shards end at image {expect_first} but the image list has "
                            f"{len(metas[0]['images'])}")
    if require_complete:
        for i in order:
            m = metas[i]
            if not m["complete"]:
                s = m["shard"]
                done = max(m["next_image"], s["first"]) - s["first"]
                raise IncompleteError(f"{_describe(dirs[i], m)} is incomplete ({done} of images "
                                      f"[{s['first']}, {s['end']}) done); rerun its task to "
                                      "finish it")
    return order


def combined_meta(ordered):
    """A set's metadata from its shards' (in shard order): what a one-machine run writes."""
    out = copy.deepcopy(ordered[0])
    out.pop("shard", None)
    out["records"] = 0
    out["skipped"] = []
    out["complete"] = True
    out["next_image"] = len(out["images"])
    prefix_done = True
    for m in ordered:
        out["records"] += m["records"]
        out["skipped"].extend(copy.deepcopy(m["skipped"]))
        if not m["complete"] and prefix_done:
            out["complete"] = False
            out["next_image"] = max(m["next_image"], m["shard"]["first"])
            prefix_done = False
    out.setdefault("extra", {})
    out["extra"]["shards"] = len(ordered)
    return out


def feature_fingerprint(m):
    """``CacheMeta::feature_fingerprint``: 16 hex digits of the SHA-256 of the feature settings'
    compact JSON (keys sorted, as nlohmann::json dumps them); what ``head.bin`` records under
    ``features.fingerprint`` and ``featcache info`` prints."""
    import hashlib

    w = m["weights"]
    p = m["preprocess"]
    f = {"weights": w["name"] if w["random"] else w["sha256"], "dim": m["dim"], "size": p["size"],
         "mean": p["mean"], "std": p["std"], "interpolation": p["interpolation"]}
    if m.get("cut", "pool5") != "pool5":  # pool5 caches keep the fingerprint they always had
        f["cut"] = m["cut"]
    if m.get("precision", "fp32") != "fp32":  # as are fp32 and VGG16 ones
        f["precision"] = m["precision"]
    if m.get("backbone", "vgg16") != "vgg16":
        f["backbone"] = m["backbone"]
    text = json.dumps(f, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
