-- refresh_token grant (RFC 6749 §6) with rotation: every refresh token is good for one request, so each
-- connection carries on with the token the previous answer returned, as a real client does. The pool
-- starts with the pre-seeded tokens of BENCH_TOKENS (one per line, more than there are connections: each is
-- the head of its own token family), and every 200 puts its new refresh token back. A failed refresh loses
-- its chain (counted as a non-2xx answer); when the pool runs dry the request carries "spent" and fails.
dofile("report.lua")

local pool = {}
local auth = os.getenv("BENCH_AUTH")

function init(args)
   for line in io.lines(os.getenv("BENCH_TOKENS")) do
      if line ~= "" then
         pool[#pool + 1] = line
      end
   end
end

function request()
   local token = table.remove(pool) or "spent"
   local headers = {
      ["Authorization"] = auth,
      ["Content-Type"] = "application/x-www-form-urlencoded",
   }
   return wrk.format("POST", wrk.path, headers, "grant_type=refresh_token&refresh_token=" .. token)
end

function response(status, headers, body)
   if status == 200 then
      local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
      if token then
         pool[#pool + 1] = token
      end
   end
end
