-- Argo CD health of a kiln.dev/ModelDeployment (argocd-cm: resource.customizations.health.kiln.dev_ModelDeployment).
-- Progressing while a canary runs, Suspended when paused, Degraded after a rollback or a
-- failure (the stable version still serves, but what Git asked for is not running),
-- Healthy once promoted and Ready.
local hs = {status = "Progressing", message = "Waiting for the operator"}
if obj.status == nil then
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
local conditions = {}
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    conditions[c.type] = c
  end
end
local message = obj.status.message or ""
local phase = obj.status.phase
if conditions.Stalled ~= nil and conditions.Stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = (conditions.Stalled.reason or "Stalled") .. ": " .. (conditions.Stalled.message or message)
  return hs
end
if phase == "RolledBack" or phase == "Failed" then
  hs.status = "Degraded"
  hs.message = phase .. ": " .. message
  return hs
end
if phase == "Paused" then
  hs.status = "Suspended"
  hs.message = "Paused: " .. message
  return hs
end
if conditions.Reconciling ~= nil and conditions.Reconciling.status == "True" then
  hs.message = conditions.Reconciling.message or message
  return hs
end
if conditions.Ready ~= nil and conditions.Ready.status == "True" then
  hs.status = "Healthy"
  hs.message = conditions.Ready.message or message
  return hs
end
hs.message = message
return hs
