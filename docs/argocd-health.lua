-- Argo CD resource health for schedexec.io/ScheduledExecution.
-- Install in argocd-cm as resource.customizations.health.schedexec.io_ScheduledExecution
-- (see docs/gitops.md). Argo CD sets `obj` to the live object; the script returns {status, message}.
-- Progressing while the execution runs (or before the operator has seen its spec generation),
-- Healthy when it succeeded, Degraded when it failed, timed out or was cancelled.
local hs = {status = "Progressing", message = "waiting for the operator"}
local status = obj.status
if status == nil or status.phase == nil then
  return hs
end
if status.observedGeneration ~= nil and obj.metadata.generation ~= nil
    and status.observedGeneration < obj.metadata.generation then
  hs.message = "the operator has not seen the latest spec yet"
  return hs
end
local succeeded = nil
for _, condition in ipairs(status.conditions or {}) do
  if condition.type == "Succeeded" then
    succeeded = condition
  end
end
local message = status.phase
if succeeded ~= nil and succeeded.message ~= nil and succeeded.message ~= "" then
  message = succeeded.reason .. ": " .. succeeded.message
end
if status.phase == "Succeeded" then
  hs.status = "Healthy"
elseif status.phase == "Failed" or status.phase == "TimedOut" or status.phase == "Cancelled" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = message
return hs
