-- Argo CD health check for canaryctl.dev/CanaryPolicy (resource.customizations.health.canaryctl.dev_CanaryPolicy).
-- It reads what canary-controller writes in .status; docs/gitops.md says why each phase maps where it does.
local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(status)
  local where = {}
  if status.step ~= nil and status.step ~= "" then
    table.insert(where, "step " .. status.step)
  end
  if status.weight ~= nil then
    table.insert(where, "weight " .. tostring(status.weight) .. " %")
  end
  local text = status.phase
  if #where > 0 then
    text = text .. " (" .. table.concat(where, ", ") .. ")"
  end
  if status.message ~= nil and status.message ~= "" then
    text = text .. ": " .. status.message
  end
  if status.lastError ~= nil and status.lastError ~= "" and status.lastError ~= status.message then
    text = text .. "; last error: " .. status.lastError
  end
  return text
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for canary-controller to report the rollout"
  return hs
end

-- The controller refused the policy (an invalid or forbidden spec): it says so in Ready, whatever the phase.
local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "False" and status.phase ~= "Failed" then
  hs.status = "Degraded"
  hs.message = "Not in control (" .. tostring(ready.reason) .. "): " .. tostring(ready.message)
  return hs
end

-- A spec the controller has not acted on yet: what the status says is about an older generation.
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for canary-controller to act on generation " .. tostring(generation)
    .. " (it last acted on " .. tostring(status.observedGeneration) .. ")"
  return hs
end

local phase = status.phase
if phase == "Promoted" then
  hs.status = "Healthy"
elseif phase == "Pending" or phase == "Progressing" or phase == "RollingBack" then
  hs.status = "Progressing"
elseif phase == "Paused" then
  hs.status = "Suspended"
elseif phase == "RolledBack" or phase == "Aborted" or phase == "Failed" then
  hs.status = "Degraded"
else
  hs.status = "Unknown"
end
hs.message = describe(status)
return hs
