-- Argo CD health of a kiln.dev/TrainingJob (argocd-cm: resource.customizations.health.kiln.dev_TrainingJob).
-- Stale status (observedGeneration behind) and Reconciling are Progressing; Stalled (an
-- invalid spec) and a failed run are Degraded; a succeeded run with Ready=True is Healthy;
-- a scheduled job that has not run yet is Suspended.
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
local function text(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end
if conditions.Stalled ~= nil and conditions.Stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = (conditions.Stalled.reason or "Stalled") .. ": " .. text(conditions.Stalled, "stalled")
  return hs
end
if obj.status.phase == "Failed" then
  local ready = conditions.Ready
  hs.status = "Degraded"
  hs.message = ((ready ~= nil and ready.reason) or "Failed") .. ": " .. text(ready, "the run failed")
  return hs
end
if conditions.Reconciling ~= nil and conditions.Reconciling.status == "True" then
  if conditions.Reconciling.reason == "Suspended" then
    hs.status = "Suspended"
  end
  hs.message = text(conditions.Reconciling, "Reconciling")
  return hs
end
if conditions.Ready ~= nil and conditions.Ready.status == "True" then
  hs.status = "Healthy"
  hs.message = text(conditions.Ready, "Ready")
  return hs
end
return hs
