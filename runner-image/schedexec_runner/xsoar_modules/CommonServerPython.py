"""The CommonServerPython names an XSOAR integration uses, so that its unmodified .py runs under schedexec.

Written for schedexec from XSOAR's public documentation (not copied from demisto/content). An
integration starts with `from CommonServerPython import *`, which in XSOAR gives it the helpers below
and the modules CommonServerPython imports itself (`json`, `traceback`, `Dict`, ...): integrations
rely on both, so this module has no `__all__` and imports the same modules.

The scheduled-command names are schedexec_runner.xsoar's, one class for every spelling XSOAR has
documented: `ScheduledCommand`, `Common.ScheduledCommandConfiguration` and `ScheduleMetadata` (the
scheduled-commands page), passed as `CommandResults(scheduled_command=...)` or
`CommandResults(scheduled_command_config=...)`; `polling_function` and `PollResult` make them.
What `return_results`/`return_error` hand to `demisto.results` becomes the run's outcome envelope
(schedexec_runner.xsoar_native).

HTTP goes through `requests`, as in XSOAR (`BaseClient._http_request`): an integration's image needs
it anyway (integrations import `requests` and `urllib3` themselves), so the XSOAR runtime does not
hand-write HTTP. What is not here (war-room files, indicators, fetch-incidents' incidents, XSOAR's
own API) is listed in docs/runner-contract.md.
"""

from __future__ import annotations

import base64  # noqa: F401  (integrations use it through the star import, as with XSOAR's)
import hashlib
import json
import os  # noqa: F401
import re
import sys
import time  # noqa: F401
import traceback
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone  # noqa: F401
from typing import Any, Dict, List, Optional, Tuple, Union  # noqa: F401, UP035

import demistomock as demisto  # type: ignore[import-not-found,unused-ignore]  # (the integration's own)
import requests
import urllib3  # noqa: F401

from schedexec_runner.component import PollResult  # noqa: F401
from schedexec_runner.xsoar import (  # noqa: F401  (what integrations take from CommonServerPython)
    CommandResults,
    DemistoException,
    ScheduledCommand,
    arg_to_number,
    argToBoolean,
    polling_function,
)

entryTypes = {
    "note": 1,
    "downloadAgent": 2,
    "file": 3,
    "error": 4,
    "pinned": 5,
    "userManagement": 6,
    "image": 7,
    "playgroundError": 8,
    "entryInfoFile": 9,
    "warning": 11,
    "map": 15,
    "debug": 16,
    "widget": 17,
}
"""XSOAR's entry types, by name."""

formats = {
    "html": "html",
    "table": "table",
    "json": "json",
    "text": "text",
    "dbotResponse": "dbotCommandResponse",
    "markdown": "markdown",
}


class EntryType:
    NOTE = 1
    FILE = 3
    ERROR = 4
    WARNING = 11
    DEBUG = 16


class EntryFormat:
    HTML = "html"
    TABLE = "table"
    JSON = "json"
    TEXT = "text"
    MARKDOWN = "markdown"


regexFlags = re.M
md5Regex = re.compile(r"\b[0-9a-fA-F]{32}\b", regexFlags)
sha1Regex = re.compile(r"\b[0-9a-fA-F]{40}\b", regexFlags)
sha256Regex = re.compile(r"\b[0-9a-fA-F]{64}\b", regexFlags)
sha512Regex = re.compile(r"\b[0-9a-fA-F]{128}\b", regexFlags)

ScheduleMetadata = ScheduledCommand
"""The seed document's name for a scheduled command's arguments: the same class."""


class Common:
    """XSOAR's `Common` namespace: the parts a polling integration uses."""

    ScheduledCommandConfiguration = ScheduledCommand
    """The scheduled-commands page's spelling: `Common.ScheduledCommandConfiguration(command=..., ...)`."""

    class DBotScore:
        NONE = 0
        GOOD = 1
        SUSPICIOUS = 2
        BAD = 3


def return_results(results: Any) -> None:
    """Record `results` (a CommandResults, a list of them, an entry dict or a plain value) as the run's outcome."""
    if results is None:
        return
    if isinstance(results, list | tuple):
        for result in results:
            return_results(result)
        return
    demisto.results(results)


def return_error(message: str, error: Any = "", outputs: Any = None) -> None:
    """End the run as an error entry with `message`, as XSOAR does (it then exits the integration)."""
    demisto.error(f"{message}\n{error}" if error else message)
    demisto.results({"Type": entryTypes["error"], "ContentsFormat": formats["text"], "Contents": str(message)})
    sys.exit(0)


def return_warning(message: str, exit: bool = False, warning: str = "", outputs: Any = None) -> None:
    demisto.info(message)
    demisto.results({"Type": entryTypes["warning"], "ContentsFormat": formats["text"], "Contents": str(message)})
    if exit:
        sys.exit(0)


def get_integration_context(sync: bool = True, with_version: bool = False) -> dict[str, Any]:
    context: dict[str, Any] = demisto.getIntegrationContext()
    return context


def set_integration_context(context: dict[str, Any], sync: bool = True, version: int = -1) -> None:
    demisto.setIntegrationContext(context)


def arg_to_bool_or_none(value: Any) -> bool | None:
    """None for None, else argToBoolean."""
    return None if value is None else argToBoolean(value)


def argToList(arg: Any, separator: str = ",") -> list[Any]:
    """A list from a list, a JSON list, or a `separator`-separated string (stripped); [] for an empty arg."""
    if not arg:
        return []
    if isinstance(arg, list):
        return arg
    if isinstance(arg, str):
        if arg.startswith("["):
            return list(json.loads(arg))
        return [item.strip() for item in arg.split(separator)]
    return [arg]


def assign_params(
    keys_to_ignore: Iterable[str] | None = None, values_to_ignore: Iterable[Any] | None = None, **kwargs: Any
) -> dict[str, Any]:
    """The keyword arguments whose value is not empty (None, '', [], {}, ()) and whose key is not ignored."""
    ignored_values = list(values_to_ignore) if values_to_ignore is not None else [None, "", [], {}, ()]
    ignored_keys = set(keys_to_ignore or ())
    return {key: value for key, value in kwargs.items() if key not in ignored_keys and value not in ignored_values}


def remove_empty_elements(d: Any) -> Any:
    """`d` without None, empty strings, lists and dicts, recursively."""
    if isinstance(d, dict):
        cleaned = {k: remove_empty_elements(v) for k, v in d.items()}
        return {k: v for k, v in cleaned.items() if v not in (None, "", [], {})}
    if isinstance(d, list):
        return [v for v in (remove_empty_elements(v) for v in d) if v not in (None, "", [], {})]
    return d


def urljoin(url: str, suffix: str = "") -> str:
    """`url` and `suffix` joined by exactly one slash (XSOAR's urljoin, not urllib's)."""
    if not url.endswith("/"):
        url += "/"
    return url + suffix.removeprefix("/")


def string_to_table_header(string: str) -> str:
    """`task_id` → `Task Id`."""
    return string.replace("_", " ").title()


def underscoreToCamelCase(s: str, upper_camel: bool = True) -> str:
    words = s.split("_")
    joined = "".join(word[:1].upper() + word[1:] for word in words)
    return joined if upper_camel else joined[:1].lower() + joined[1:]


def createContext(
    data: Any, id: Any = None, keyTransform: Callable[[str], str] | None = None, removeNull: bool = False
) -> Any:
    """`data` with its keys transformed and, with `removeNull`, its empty values dropped (lists item by item)."""
    if isinstance(data, list | tuple):
        return [createContext(item, id, keyTransform, removeNull) for item in data]
    if not isinstance(data, dict):
        return data
    context = {}
    for key, value in data.items():
        if removeNull and value in (None, "", [], {}):
            continue
        context[keyTransform(key) if keyTransform else key] = value
    if id is not None:
        context.setdefault("ID", id)
    return context


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list) and all(not isinstance(item, dict | list) for item in value):
        text = ",\n".join(str(item) for item in value)
    elif isinstance(value, dict | list):
        text = json.dumps(value)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", "<br>")


def tableToMarkdown(
    name: str,
    t: Any,
    headers: Any = None,
    headerTransform: Callable[[str], str] | None = None,
    removeNull: bool = False,
    metadata: str | None = None,
    url_keys: Any = None,
    date_fields: Any = None,
    json_transform_mapping: Any = None,
    is_auto_json_transform: bool = False,
    sort_headers: bool = True,
) -> str:
    """A Markdown table titled `name` of `t` (a dict or a list of dicts, or of plain values), in XSOAR's layout:
    `### name`, a header row, a separator row, one row per item; `**No entries.**` when there is nothing."""
    rows: list[Any] = [t] if isinstance(t, dict) else list(t or [])
    title = f"### {name}\n" if name else ""
    if metadata:
        title += f"{metadata}\n"
    if isinstance(headers, str):
        headers = [headers]
    if rows and not isinstance(rows[0], dict):
        header = headers[0] if headers else "value"
        rows = [{header: row} for row in rows]
    if headers is None:
        seen: dict[str, None] = {}
        for row in rows:
            seen.update(dict.fromkeys(row))
        headers = sorted(seen) if sort_headers else list(seen)
    if removeNull:
        headers = [h for h in headers if any(row.get(h) not in (None, "", [], {}) for row in rows)]
    if not rows or not headers:
        return f"{title}**No entries.**\n"
    shown = [headerTransform(h) if headerTransform else h for h in headers]
    lines = ["|" + "|".join(shown) + "|", "|" + "|".join("---" for _ in shown) + "|"]
    lines += ["|" + "|".join(_cell(row.get(h)) for h in headers) + "|" for row in rows]
    return title + "\n".join(lines) + "\n"


def fileResult(filename: str, data: Any, file_type: int | None = None) -> dict[str, Any]:
    """A file entry. schedexec keeps no war-room files: the entry names the file, its size and digests; the
    bytes are not kept (the run's result lives in the execution's status, never a file store)."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data or b"")
    return {
        "Type": entryTypes["file"] if file_type is None else file_type,
        "ContentsFormat": formats["text"],
        "Contents": "",
        "File": filename,
        "Name": filename,
        "Size": len(raw),
        "SHA256": hashlib.sha256(raw).hexdigest(),
        "SHA1": hashlib.sha1(raw).hexdigest(),  # an identifier XSOAR shows, not a security use
        "MD5": hashlib.md5(raw).hexdigest(),
    }


class BaseClient:
    """XSOAR's BaseClient: a `requests` session with the integration's base URL, headers, auth and TLS
    settings, and `_http_request`, which raises DemistoException on a status outside `ok_codes`."""

    def __init__(
        self,
        base_url: str,
        verify: bool = True,
        proxy: bool = False,
        ok_codes: tuple[int, ...] = (),
        headers: dict[str, str] | None = None,
        auth: Any = None,
        timeout: float = 60,
        **_: Any,
    ) -> None:
        self._base_url = base_url
        self._verify = verify
        self._ok_codes = ok_codes
        self._headers = headers
        self._auth = auth
        self.timeout = timeout
        self._session = requests.Session()
        if not proxy:  # XSOAR honours the proxy variables only when the integration's proxy box is ticked
            self._session.trust_env = False

    def __del__(self) -> None:
        session = getattr(self, "_session", None)
        if session is not None:
            session.close()

    def _http_request(
        self,
        method: str,
        url_suffix: str = "",
        full_url: str | None = None,
        headers: dict[str, str] | None = None,
        auth: Any = None,
        json_data: Any = None,
        params: Any = None,
        data: Any = None,
        files: Any = None,
        timeout: float | None = None,
        resp_type: str = "json",
        ok_codes: Iterable[int] | None = None,
        return_empty_response: bool = False,
        error_handler: Callable[[Any], Any] | None = None,
        empty_valid_codes: Iterable[int] | None = None,
        **_: Any,
    ) -> Any:
        """One request; the response as `resp_type` says: json (default), text, content, xml or response."""
        address = full_url or urljoin(self._base_url, url_suffix)
        try:
            response = self._session.request(
                method,
                address,
                headers=headers if headers is not None else self._headers,
                auth=auth if auth is not None else self._auth,
                json=json_data,
                params=params,
                data=data,
                files=files,
                timeout=timeout or self.timeout,
                verify=self._verify,
            )
        except requests.exceptions.SSLError as exc:
            raise DemistoException(
                f"SSL Certificate Verification Failed - try selecting 'Trust any certificate' "
                f"checkbox in the integration configuration. {exc}"
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            raise DemistoException(
                f"Verify that the server URL parameter is correct and that you have access to "
                f"the server from your host.\nError Type: {type(exc).__name__}\n"
                f"Error Number: [None]\nMessage: {exc}\n"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise DemistoException(f"Error in API call - {exc}") from exc
        codes = tuple(ok_codes or self._ok_codes)
        if not (response.status_code in codes if codes else response.ok):
            if error_handler is not None:
                error_handler(response)
            raise DemistoException(
                f"Error in API call [{response.status_code}] - {response.reason}\n{response.text}", res=response
            )
        if return_empty_response and response.status_code == 204:
            return response
        if empty_valid_codes and response.status_code in set(empty_valid_codes) and not response.content:
            return {}
        if resp_type == "json":
            try:
                return response.json()
            except ValueError as exc:
                raise DemistoException(
                    f"Failed to parse json object from response: {response.content!r}", exc, res=response
                ) from exc
        if resp_type == "text":
            return response.text
        if resp_type == "content":
            return response.content
        if resp_type == "xml":
            return response.text
        return response


def handle_proxy(
    proxy_param_name: str = "proxy",
    checkbox_default_value: bool = False,
    handle_insecure: bool = True,
    insecure_param_name: str | None = None,
) -> dict[str, str]:
    """The proxy settings the environment gives (requests reads them itself when the client allows it)."""
    return {}


def get_error(execute_command_result: Any) -> str:
    return str(execute_command_result)


def is_error(execute_command_result: Any) -> bool:
    entries = execute_command_result if isinstance(execute_command_result, list) else [execute_command_result]
    return any(isinstance(e, dict) and e.get("Type") == entryTypes["error"] for e in entries)


def format_exc() -> str:
    return traceback.format_exc()
