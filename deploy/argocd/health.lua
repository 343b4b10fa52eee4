-- Argo CD health check for acrattach.io/RegistryAttachment.
--
-- Install: the argocd-cm key resource.customizations.health.acrattach.io_RegistryAttachment
-- (argocd-cm-patch.yaml carries this file verbatim; tests/gitops_health.rs fails if they differ).
-- Runs in gopher-lua (Lua 5.1) with the global `obj` and must return {status, message}.
-- ConfigMap scripts get only the base, table and package libraries (no `string`), so this file
-- uses nothing else: no string.format, only `..` and `ipairs`.
--
-- The rules follow kstatus, which Flux and `kubectl wait` apply to the same object:
--   1. status.observedGeneration differs from metadata.generation (or there is no status):
--      Progressing, because the operator has not acted on the latest spec yet. kstatus calls an
--      object without status Current; we do not, since no grant exists before the first status.
--   2. The first condition, in list order, that is Stalled=True or Reconciling=True decides:
--      Stalled -> Degraded (a human must act), Reconciling -> Progressing (retrying by itself).
--   3. Ready=True -> Healthy; Ready=False or Unknown -> Progressing.
--   4. Anything else -> Progressing.
-- Argo CD answers "Pending deletion" for an object with a deletionTimestamp before calling this.

local health = {status = "Progressing", message = ""}

-- "Reason: message", or whichever of the two is present.
local function describe(condition)
  local reason = condition.reason
  local message = condition.message
  if reason ~= nil and reason ~= "" and message ~= nil and message ~= "" then
    return reason .. ": " .. message
  end
  if message ~= nil and message ~= "" then
    return message
  end
  if reason ~= nil and reason ~= "" then
    return reason
  end
  return condition.type .. " is " .. condition.status
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status

if status == nil or status.observedGeneration ~= generation then
  if generation == nil then
    health.message = "Waiting for the operator to report status"
  else
    health.message = "Waiting for the operator to observe generation " .. generation
  end
  return health
end

local ready = nil
if type(status.conditions) == "table" then
  for _, condition in ipairs(status.conditions) do
    if condition.status == "True" and condition.type == "Stalled" then
      health.status = "Degraded"
      health.message = describe(condition)
      return health
    end
    if condition.status == "True" and condition.type == "Reconciling" then
      health.message = describe(condition)
      return health
    end
    if ready == nil and condition.type == "Ready" then
      ready = condition
    end
  end
end

if ready == nil then
  health.message = "Waiting for the operator to report the Ready condition"
elseif ready.status == "True" then
  health.status = "Healthy"
  health.message = describe(ready)
else
  health.message = describe(ready)
end
return health
