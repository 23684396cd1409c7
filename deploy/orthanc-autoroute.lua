-- Orthanc Lua script: forward each stable pediatric elbow or wrist radiograph study to pedfrac.
-- Register pedfrac in Orthanc's "DicomModalities" as "pedfrac", load this file with the "LuaScripts"
-- setting, and set "StableAge" to the seconds Orthanc waits before a study counts as stable.
-- Studies that pedfrac already answered are not sent again: its own series have Manufacturer "pedfrac".

local BODY_PARTS = { WRIST = true, ELBOW = true, HAND = true, FOREARM = true, ARM = true }
local MODALITIES = { CR = true, DX = true }

function OnStableStudy(studyId, tags, metadata)
  local series = ParseJson(RestApiGet('/studies/' .. studyId .. '/series?expand'))
  local matches = false
  for _, item in ipairs(series) do
    local main = item['MainDicomTags']
    local body = string.upper(main['BodyPartExamined'] or '')
    local modality = main['Modality'] or ''
    local own = main['Manufacturer'] == 'pedfrac'
    if own then
      return
    end
    if MODALITIES[modality] and BODY_PARTS[body] then
      matches = true
    end
  end

  if matches then
    print('Forwarding stable study ' .. studyId .. ' to pedfrac')
    RestApiPost('/modalities/pedfrac/store', DumpJson({ Resources = { studyId }, Asynchronous = true }))
  end
end
