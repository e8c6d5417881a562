"""kmock's Kubernetes emulator plus the API-server duties our operator meets.

kmock keeps objects and serves list/watch/get/create/patch/delete. A real API
server also stamps metadata on every write, and kopf and our client rely on
it: ``uid`` (owner references), ``resourceVersion`` (kopf's optimistic
patches), ``generation`` (observedGeneration), names for ``generateName``
(kopf's Events), a failed JSON-patch ``test`` answered 422 (kopf's
optimistic concurrency retries on exactly that), and a list's resourceVersion
that a watch can start from, without replaying what the list already gave
(kmock replays every object as ADDED; kopf would act on a stale copy). This subclass adds those,
filters lists by equality label selectors (the operator lists a pool's pods), and records which
verbs were used on which resources, so a test can check the RBAC manifests grant them.

It also serves server-side apply (``application/apply-patch+yaml``), which
kmock treats as a merge patch: fields a manager applied once and leaves out
are removed (server_side_apply.py has the rules). Owners are tracked, as
``metadata.managedFields``, for the kinds the operator applies (Deployments,
Services, PodDisruptionBudgets): created or updated by any verb.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import jsonpatch
import kmock
import server_side_apply as ssa
from kmock import KubernetesEmulator, KubernetesError, ResourceInfo

TEST_AGENT = "docpipe-operator-tests"
"""The User-Agent of the test's own requests (playing kubectl), kept out of ``calls``."""

VERBS = {
    kmock.action.LIST: "list",
    kmock.action.WATCH: "watch",
    kmock.action.FETCH: "get",
    kmock.action.CREATE: "create",
    kmock.action.UPDATE: "patch",
    kmock.action.DELETE: "delete",
}

RESOURCES = {
    "v1/namespaces": ResourceInfo(
        kind="Namespace", namespaced=False, verbs=["get", "list", "watch"]
    ),
    "v1/events": ResourceInfo(kind="Event", namespaced=True, verbs=["create", "list"]),
    "v1/secrets": ResourceInfo(kind="Secret", namespaced=True, verbs=["get", "create"]),
    "v1/pods": ResourceInfo(kind="Pod", namespaced=True, verbs=["get", "list", "create", "patch"]),
    "v1/services": ResourceInfo(
        kind="Service", namespaced=True, verbs=["get", "create", "patch", "list"]
    ),
    "apps/v1/deployments": ResourceInfo(
        kind="Deployment",
        namespaced=True,
        subresources=["status", "scale"],
        verbs=["get", "create", "patch", "delete", "list"],
    ),
    "policy/v1/poddisruptionbudgets": ResourceInfo(
        kind="PodDisruptionBudget",
        namespaced=True,
        verbs=["get", "create", "patch", "delete", "list"],
    ),
    "docpipe.io/v1alpha1/documentpipelines": ResourceInfo(
        kind="DocumentPipeline",
        namespaced=True,
        shortnames=["dp"],
        subresources=["status"],
        verbs=["get", "list", "watch", "create", "patch", "delete"],
    ),
    "kopf.dev/v1/kopfpeerings": ResourceInfo(
        kind="KopfPeering", namespaced=True, verbs=["get", "list", "watch", "patch", "create"]
    ),
}


APPLY_PATCH = "application/apply-patch+yaml"
TRACKED = {"deployments", "services", "poddisruptionbudgets"}
"""Resources whose field owners are recorded (the ones the operator applies)."""

Fault = Callable[[str, str, "str | None"], "int | None"]
"""(verb, resource[/subresource], name) -> an HTTP status to fail the request with, or None."""

_FAULT_REASONS = {409: "Conflict", 500: "InternalError", 503: "ServiceUnavailable"}


class ApiServer(KubernetesEmulator):
    """The emulator, stamping metadata like an API server and logging verbs."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.version = 0
        self.calls: set[tuple[str, str, str]] = set()
        """(api group, resource[/subresource], verb) of every request but the test's own."""
        self.log: list[tuple[str, str, str | None]] = []
        """(verb, resource[/subresource], name) of every request, in order."""
        self.faults: list[Fault] = []
        """Consulted on every operator request: the first status returned fails it."""
        self.failed: list[tuple[str, str, str | None, int]] = []
        """Requests a fault failed: (verb, resource, name, status)."""
        for key, info in RESOURCES.items():
            self.resources[key] = info

    def add_namespace(self, name: str) -> None:
        self.objects["v1/namespaces", None, name] = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "uid": str(uuid.uuid4())},
        }

    async def _handle(self, request: Any) -> Any:
        # Discovery (/api, /apis/<group>...) has no plural: every user may read it.
        if request.resource is not None and request.action is not None and request.resource.plural:
            plural = request.resource.plural
            if request.subresource:
                plural = f"{plural}/{request.subresource}"
            verb = VERBS[request.action]
            if request.headers.get("User-Agent") != TEST_AGENT:
                self.calls.add((request.resource.group, plural, verb))
                for fault in self.faults:
                    if status := fault(verb, plural, request.name):
                        self.failed.append((verb, plural, request.name, status))
                        reason = _FAULT_REASONS.get(status, "Error")
                        raise KubernetesError(
                            status=status, reason=reason, message=f"injected {status} {reason}"
                        )
            self.log.append((verb, plural, request.name))
            if request.action == kmock.action.UPDATE and request.headers.get(
                "Content-Type", ""
            ).startswith(APPLY_PATCH):
                return await self._serve_apply(request)
            if request.action == kmock.action.CREATE and isinstance(request.data, dict):
                self._stamp_new(request.data)
                if request.resource.plural in TRACKED:
                    self._track_create(request)
            elif request.action == kmock.action.UPDATE:
                self._stamp_update(request)
                if request.resource.plural in TRACKED and request.subresource is None:
                    self._track_update(request)
        try:
            return await super()._handle(request)
        except jsonpatch.JsonPatchException as exc:
            raise KubernetesError(status=422, reason="Invalid", message=str(exc)) from exc

    def _next_version(self) -> str:
        self.version += 1
        return str(self.version)

    async def _serve_list(self, request: Any) -> Any:
        payload = await super()._serve_list(request)
        payload["metadata"]["resourceVersion"] = str(self.version)
        if selector := request.params.get("labelSelector"):
            payload["items"] = [i for i in payload["items"] if _matches(selector, i)]
        return payload

    async def _serve_watch(self, request: Any) -> AsyncIterator[Any]:
        since = request.params.get("resourceVersion")
        async for event in super()._serve_watch(request):
            if since and since.isdigit() and isinstance(event, dict):
                version = event.get("object", {}).get("metadata", {}).get("resourceVersion", "0")
                if int(version) <= int(since):
                    continue  # the list already showed this state
            yield event

    def _stamp_new(self, data: dict[str, Any]) -> None:
        meta = data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = self._next_version()
        meta["generation"] = 1
        meta["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _stamp_update(self, request: Any) -> None:
        version = self._next_version()
        data = request.data
        if isinstance(data, list):  # JSON patch
            touches_spec = any(str(op.get("path", "")).startswith("/spec") for op in data)
            data.append({"op": "add", "path": "/metadata/resourceVersion", "value": version})
        elif isinstance(data, dict):  # merge patch
            touches_spec = "spec" in data and request.subresource is None
            data.setdefault("metadata", {})["resourceVersion"] = version
        else:
            return
        if touches_spec and request.subresource is None:
            key = (request.resource, request.namespace, request.name)
            try:
                current = self.objects[key].raw
            except (KeyError, ValueError):
                return
            generation = int(current.get("metadata", {}).get("generation", 1)) + 1
            if isinstance(data, list):
                data.append({"op": "add", "path": "/metadata/generation", "value": generation})
            else:
                data["metadata"]["generation"] = generation

    # ------------------------------------------------------------- field owners

    @staticmethod
    def _manager(request: Any) -> str:
        """``?fieldManager=``, else the user agent's first word, as the API server does."""
        if manager := request.params.get("fieldManager"):
            return str(manager)
        return str(request.headers.get("User-Agent", "unknown")).split("/", 1)[0]

    def _track_create(self, request: Any) -> None:
        data = request.data
        owned = {(self._manager(request), "Update"): ssa.field_set(data)}
        data["metadata"]["managedFields"] = ssa.managed_fields(owned, data.get("apiVersion", ""))

    def _track_update(self, request: Any) -> None:
        key = (request.resource, request.namespace, request.name)
        try:
            before = self.objects[key].raw
        except (KeyError, ValueError):
            return
        data = request.data
        if _sets_managed_fields(data):
            return  # a client may write owners itself (kubectl's client-side-apply upgrade)
        try:
            if isinstance(data, list):
                after = jsonpatch.apply_patch(before, data, in_place=False)
            else:
                after = ssa.merge_patch_apply(before, data)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError):
            return  # the patch itself fails below, as the API server would
        fields = ssa.record_update(before, after, self._manager(request))
        if fields is None:
            return
        if isinstance(data, list):
            data.append({"op": "add", "path": "/metadata/managedFields", "value": fields})
        else:
            data.setdefault("metadata", {})["managedFields"] = fields

    async def _serve_apply(self, request: Any) -> aiohttp.web.StreamResponse:
        """Server-side apply: create the object, or merge into it with field ownership."""
        manager = request.params.get("fieldManager")
        if not manager:
            raise KubernetesError(
                status=422, reason="Invalid", message="fieldManager is required for apply"
            )
        applied = request.data
        if not isinstance(applied, dict) or request.subresource is not None:
            raise KubernetesError(status=400, reason="BadRequest", message="cannot apply that")
        meta = applied.get("metadata") or {}
        if meta.get("name") not in (None, request.name):
            raise KubernetesError(status=400, reason="BadRequest", message="name mismatch")
        # Go's strconv.ParseBool, as the API server parses it.
        force = request.params.get("force") in ("1", "t", "T", "true", "TRUE", "True")
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            found = self.objects[key] if key in self.objects else None
            if found is None or found.deleted:
                if request.resource.plural == "deployments" and not (
                    (applied.get("spec") or {}).get("template")
                ):
                    raise KubernetesError(
                        status=422, reason="Invalid", message="spec.template: Required value"
                    )
                # Applying to a missing object creates it (RBAC: create as well as patch).
                if request.headers.get("User-Agent") != TEST_AGENT:
                    self.calls.add((request.resource.group, request.resource.plural, "create"))
                body = ssa.apply(None, applied, manager, force=force)
                body["metadata"] |= {"name": request.name, "namespace": request.namespace}
                self._stamp_new(body)
                if found is None:
                    self.objects[key] = body
                else:
                    found.create(body)
                raw = self.objects[key].raw
                await self._buses[request.resource].put({"type": "ADDED", "object": raw})
                return aiohttp.web.json_response(raw, status=201)
            live = found.raw
            try:
                body = ssa.apply(live, applied, manager, force=force)
            except ssa.ApplyConflict as exc:
                raise KubernetesError(status=409, reason="Conflict", message=str(exc)) from exc
            unchanged = {**body, "metadata": {**body["metadata"], "managedFields": None}} == {
                **live,
                "metadata": {**live["metadata"], "managedFields": None},
            }
            if unchanged and _same_owners(live, body):
                return aiohttp.web.json_response(live, status=200)
            body["metadata"]["resourceVersion"] = self._next_version()
            if body.get("spec") != live.get("spec"):
                body["metadata"]["generation"] = int(live["metadata"].get("generation", 1)) + 1
            found.patch(ssa.merge_patch(live, body))
            raw = found.raw
            await self._buses[request.resource].put({"type": "MODIFIED", "object": raw})
            return aiohttp.web.json_response(raw, status=200)


def _sets_managed_fields(data: Any) -> bool:
    if isinstance(data, list):
        return any(op.get("path") == "/metadata/managedFields" for op in data)
    return isinstance(data, dict) and "managedFields" in (data.get("metadata") or {})


def _same_owners(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return ssa.owners(a) == ssa.owners(b)


def _matches(selector: str, obj: dict[str, Any]) -> bool:
    """An equality-based label selector (``a=b,c=d``), as the API server filters a list."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key.strip()) != value.lstrip("=").strip():
            return False
    return True
