"""Body validation as Discord does it, with Discord's error shapes.

Each check returns None when the body is fine, or (status, body) ready to send.
Form errors use the nested shape of error code 50035:
  {"code": 50035, "message": "Invalid Form Body",
   "errors": {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "..."}]}}}
"""

import re


class FormErrors:
    def __init__(self):
        self.errors = {}

    def add(self, path, code, message):
        node = self.errors
        for key in path:
            node = node.setdefault(str(key), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def result(self):
        if not self.errors:
            return None
        return 400, {"code": 50035, "message": "Invalid Form Body", "errors": self.errors}


def error(status, code, message):
    return status, {"message": message, "code": code}


def _max_len(fe, path, value, limit):
    if value is None:
        return 0
    if not isinstance(value, str):
        fe.add(path, "BASE_TYPE_STRING", "Must be a string.")
        return 0
    if len(value) > limit:  # Python len() counts code points, as Discord does
        fe.add(path, "BASE_TYPE_MAX_LENGTH", "Must be %d or fewer in length." % limit)
    return len(value)


def _embeds(fe, embeds):
    if not isinstance(embeds, list):
        fe.add(["embeds"], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        return
    if len(embeds) > 10:
        fe.add(["embeds"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    total = 0
    for i, e in enumerate(embeds):
        p = ["embeds", i]
        if not isinstance(e, dict):
            fe.add(p, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            continue
        total += _max_len(fe, p + ["title"], e.get("title"), 256)
        total += _max_len(fe, p + ["description"], e.get("description"), 4096)
        footer = e.get("footer")
        if isinstance(footer, dict):
            total += _max_len(fe, p + ["footer", "text"], footer.get("text"), 2048)
        author = e.get("author")
        if isinstance(author, dict):
            total += _max_len(fe, p + ["author", "name"], author.get("name"), 256)
        fields = e.get("fields")
        if fields is not None:
            if not isinstance(fields, list):
                fe.add(p + ["fields"], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
                continue
            if len(fields) > 25:
                fe.add(p + ["fields"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
            for j, f in enumerate(fields):
                fp = p + ["fields", j]
                if not isinstance(f, dict):
                    fe.add(fp, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
                    continue
                for key, limit in (("name", 256), ("value", 1024)):
                    if f.get(key) in (None, ""):
                        fe.add(fp + [key], "BASE_TYPE_REQUIRED", "This field is required")
                    else:
                        total += _max_len(fe, fp + [key], f.get(key), limit)
    if total > 6000:
        fe.add(["embeds"], "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")


def _components(fe, rows):
    if not isinstance(rows, list):
        fe.add(["components"], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        return
    if len(rows) > 5:
        fe.add(["components"], "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
    seen = set()
    for i, row in enumerate(rows):
        p = ["components", i]
        if not isinstance(row, dict) or row.get("type") != 1:
            fe.add(p, "UNION_TYPE_CHOICES",
                   "Value of field \"type\" must be one of (1,).")
            continue
        comps = row.get("components")
        if not isinstance(comps, list) or not comps:
            fe.add(p + ["components"], "BASE_TYPE_REQUIRED", "This field is required")
            continue
        if len(comps) > 5:
            fe.add(p + ["components"], "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
        for j, c in enumerate(comps):
            cp = p + ["components", j]
            if not isinstance(c, dict) or c.get("type") not in (2, 3, 5, 6, 7, 8):
                fe.add(cp, "UNION_TYPE_CHOICES",
                       "Value of field \"type\" must be one of (2, 3, 5, 6, 7, 8).")
                continue
            if c["type"] != 2:
                if len(comps) > 1:
                    fe.add(p, "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                           "The specified component exceeds the maximum width")
                cid = c.get("custom_id")
                if not isinstance(cid, str) or not cid:
                    fe.add(cp + ["custom_id"], "BASE_TYPE_REQUIRED", "This field is required")
                continue
            style = c.get("style")
            if style not in (1, 2, 3, 4, 5, 6):
                fe.add(cp + ["style"], "BASE_TYPE_CHOICES",
                       "Value must be one of {1, 2, 3, 4, 5, 6}.")
                continue
            _max_len(fe, cp + ["label"], c.get("label"), 80)
            if c.get("label") in (None, "") and c.get("emoji") is None and style != 6:
                fe.add(cp, "BUTTON_COMPONENT_INVALID_LABEL", "A label or emoji is required")
            if style == 5:
                if not isinstance(c.get("url"), str) or not c["url"]:
                    fe.add(cp + ["url"], "BASE_TYPE_REQUIRED", "This field is required")
                if "custom_id" in c:
                    fe.add(cp + ["custom_id"], "BUTTON_COMPONENT_CUSTOM_ID_URL_MUTUALLY_EXCLUSIVE",
                           "A custom id and url cannot both be specified")
            elif style != 6:
                cid = c.get("custom_id")
                if not isinstance(cid, str) or not cid:
                    fe.add(cp + ["custom_id"], "BASE_TYPE_REQUIRED", "This field is required")
                else:
                    _max_len(fe, cp + ["custom_id"], cid, 100)
                    if cid in seen:
                        fe.add(cp + ["custom_id"], "COMPONENT_CUSTOM_ID_DUPLICATED",
                               "Component custom id cannot be duplicated")
                    seen.add(cid)


def _allowed_mentions(fe, am):
    if not isinstance(am, dict):
        fe.add(["allowed_mentions"], "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return
    parse = am.get("parse")
    if parse is not None:
        if not isinstance(parse, list):
            fe.add(["allowed_mentions", "parse"], "LIST_TYPE_CONVERT",
                   "Only iterables may be used in a ListType")
        else:
            for i, v in enumerate(parse):
                if v not in ("users", "roles", "everyone"):
                    fe.add(["allowed_mentions", "parse", i], "BASE_TYPE_CHOICES",
                           "Value must be one of ('roles', 'users', 'everyone').")
    for key in ("users", "roles"):
        v = am.get(key)
        if v is not None and not isinstance(v, list):
            fe.add(["allowed_mentions", key], "LIST_TYPE_CONVERT",
                   "Only iterables may be used in a ListType")
        elif isinstance(parse, list) and v and key in parse:
            fe.add(["allowed_mentions"], "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                   "parse:[\"%s\"] and %s: [ids] are mutually exclusive." % (key, key))
    if "replied_user" in am and not isinstance(am["replied_user"], bool):
        fe.add(["allowed_mentions", "replied_user"], "BASE_TYPE_BOOLEAN", "Must be either true or false.")


def message_body(body, nfiles=0, creating=True, allow_nonce=True):
    """Validate a message create/edit body. Returns None or (status, error_body)."""
    if not isinstance(body, dict):
        return 400, {"code": 50109, "message": "The request body contains invalid JSON."}
    fe = FormErrors()
    content = body.get("content")
    if content is not None and not isinstance(content, str):
        fe.add(["content"], "BASE_TYPE_STRING", "Must be a string.")
    else:
        _max_len(fe, ["content"], content, 2000)
    if body.get("embeds") is not None:
        _embeds(fe, body["embeds"])
    if body.get("components") is not None:
        _components(fe, body["components"])
    if body.get("allowed_mentions") is not None:
        _allowed_mentions(fe, body["allowed_mentions"])
    if "nonce" in body and body["nonce"] is not None and allow_nonce:
        n = body["nonce"]
        if isinstance(n, str):
            if len(n) > 25:
                fe.add(["nonce"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        elif not isinstance(n, int) or isinstance(n, bool):
            fe.add(["nonce"], "BASE_TYPE_STRING", "Must be a string.")
    if body.get("enforce_nonce") and body.get("nonce") is None:
        fe.add(["nonce"], "BASE_TYPE_REQUIRED", "This field is required")
    ref = body.get("message_reference")
    if ref is not None and (not isinstance(ref, dict) or "message_id" not in ref):
        fe.add(["message_reference", "message_id"], "BASE_TYPE_REQUIRED", "This field is required")
    flags = body.get("flags")
    if flags is not None and (not isinstance(flags, int) or isinstance(flags, bool)):
        fe.add(["flags"], "NUMBER_TYPE_COERCE", "Value \"%s\" is not int." % (flags,))
    res = fe.result()
    if res:
        return res
    if creating:
        empty = (not content and not body.get("embeds") and not body.get("components")
                 and not nfiles and not body.get("sticker_ids") and not body.get("poll"))
        if empty:
            return error(400, 50006, "Cannot send an empty message")
    return None


NAME_RE = re.compile(r"^[-_'\w]{1,32}$", re.UNICODE)


def commands(body):
    if not isinstance(body, list):
        return 400, {"code": 50035, "message": "Invalid Form Body",
                     "errors": {"_errors": [{"code": "LIST_TYPE_CONVERT",
                                             "message": "Only iterables may be used in a ListType"}]}}
    fe = FormErrors()
    if len(body) > 100:
        fe.add([], "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
    names = set()
    for i, c in enumerate(body):
        if not isinstance(c, dict):
            fe.add([i], "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            continue
        ctype = c.get("type", 1)
        name = c.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            fe.add([i, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        elif ctype == 1 and name != name.lower():
            fe.add([i, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        if (name, ctype) in names:
            fe.add([i, "name"], "APPLICATION_COMMANDS_DUPLICATE_NAME",
                   "Application command names must be unique")
        names.add((name, ctype))
        if ctype == 1:
            d = c.get("description")
            if not isinstance(d, str) or not (1 <= len(d) <= 100):
                fe.add([i, "description"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        opts = c.get("options") or []
        if not isinstance(opts, list):
            fe.add([i, "options"], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
            continue
        if len(opts) > 25:
            fe.add([i, "options"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        optional_seen = False
        for j, o in enumerate(opts):
            op = [i, "options", j]
            if not isinstance(o, dict):
                fe.add(op, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
                continue
            if o.get("type") not in range(1, 12):
                fe.add(op + ["type"], "BASE_TYPE_CHOICES", "Value must be one of 1..11.")
            oname = o.get("name")
            if not isinstance(oname, str) or not NAME_RE.match(oname) or oname != oname.lower():
                fe.add(op + ["name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
            d = o.get("description")
            if not isinstance(d, str) or not (1 <= len(d) <= 100):
                fe.add(op + ["description"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
            if o.get("required"):
                if optional_seen:
                    fe.add(op, "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                           "Required options must be placed before non-required options")
            else:
                optional_seen = True
            choices = o.get("choices")
            if choices is not None:
                if not isinstance(choices, list):
                    fe.add(op + ["choices"], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
                elif len(choices) > 25:
                    fe.add(op + ["choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
                if o.get("autocomplete"):
                    fe.add(op + ["autocomplete"], "APPLICATION_COMMAND_OPTION_CHOICES_AUTOCOMPLETE_EXCLUSIVE",
                           "Autocomplete cannot be enabled on options that have choices")
    return fe.result()
