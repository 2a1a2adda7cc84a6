-- Argo CD health of a kiln.dev/ModelVersion (argocd-cm: resource.customizations.health.kiln.dev_ModelVersion).
-- Approved is Healthy, Pending approval is Suspended (waiting for a person or the policy),
-- Rejected is Degraded; before the operator registered it, Progressing.
local hs = {status = "Progressing", message = "Waiting for the operator to register the version"}
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
if conditions.Stalled ~= nil and conditions.Stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = (conditions.Stalled.reason or "Stalled") .. ": " .. (conditions.Stalled.message or "")
  return hs
end
if conditions.Ready == nil or conditions.Ready.status ~= "True" then
  return hs
end
local approval = obj.status.approval
local state = (approval ~= nil and approval.state) or "Pending"
local reason = (approval ~= nil and approval.reason) or ""
if state == "Approved" then
  hs.status = "Healthy"
  hs.message = "Approved " .. reason
elseif state == "Rejected" then
  hs.status = "Degraded"
  hs.message = "Rejected " .. reason
else
  hs.status = "Suspended"
  hs.message = "Pending approval " .. reason
end
return hs
