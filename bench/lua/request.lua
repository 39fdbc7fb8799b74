-- One fixed request, from the environment: BENCH_METHOD (GET), BENCH_BODY (a form body, for a POST),
-- BENCH_AUTH (the Authorization header: Basic for a client, Bearer for userinfo). The request is built
-- once, so wrk sends it at full speed. With BENCH_STOP_AFTER=n the thread stops after n answers (the RSS
-- check drives a given number of requests).
dofile("report.lua")

wrk.method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY")
if body and body ~= "" then
   wrk.body = body
   wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then
   wrk.headers["Authorization"] = auth
end

local stop_after = tonumber(os.getenv("BENCH_STOP_AFTER") or "")
if stop_after then
   local answered = 0
   function response(status, headers, body)
      answered = answered + 1
      if answered == stop_after then
         -- wrk would wait out -d: BENCH_STOP_FILE tells bench/run.py to end it now (SIGINT)
         local marker = os.getenv("BENCH_STOP_FILE")
         if marker then
            local file = io.open(marker, "w")
            if file then
               file:close()
            end
         end
         wrk.thread:stop()
      end
   end
end
