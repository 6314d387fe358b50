import openai
from conftest import OPENAI_KEY

def test_smoke(proxy, key, keysvc, mock):
    secret, record = key
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key=secret, max_retries=0)
    r = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    print(r.headers)
    c = r.parse()
    print(c)
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True))
    print(chunks[-1])
    events = keysvc.wait_usage(record.id, 2)
    print(events)
    print(mock.calls()[-1]["api_key"])
